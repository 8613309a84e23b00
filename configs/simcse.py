"""SimCSE (unsupervised / supervised contrastive sentence embeddings). Variants:
  ''         unsupervised SimCSE at the paper's setting (BERT-base from --config.init_from, batch
             64, seq 32, lr 3e-5, one epoch of 1M sentences), on a TPU pod slice.
  'sup'      supervised SimCSE on NLI triples (sent0, sent1, hard_neg; batch 512, lr 5e-5, 3
             epochs of 275k triples, seq 32) from --config.init_from.
  'runlocal' a small fresh encoder on the embedded demo text: a few minutes on a 2-core CPU;
             it shows the machinery (the loss falls from ln(32) to < 1), not embedding quality.
  'en_small' continue from the en_small MLM encoder (configs/mlm.py:en_small, its workdir in
             --config.init_from) on ../shared/data English sentences, evaluated on STS-B.
Add ',layer_attention' to any variant (configs/layer_attention.py does) for the layer-wise
attention pooler.
"""
import os

import ml_collections

from configs import common

DEMO = os.path.join(os.path.dirname(__file__), "..", "clowlab", "demo_data")
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
STSB_COLUMNS = [0, 1, 2]  # stsb_multi_mt CSVs have no header


def stsb(split: str, lang: str = "en") -> dict:
  return {"name": f"stsb_{lang}_{split}",
          "path": os.path.join(SHARED, "stsb_multi_mt", f"stsb-{lang}-{split}.csv"),
          "columns": STSB_COLUMNS}

VARIANTS = ("", "sup", "runlocal", "en_small")  # get_config args


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = [p for p in (arg or "").split(",") if p]
  method = "layer_attention" if "layer_attention" in parts else "simcse"
  variant = next((p for p in parts if p != "layer_attention"), "")
  c = common.get_config()
  c.method = method
  c.total_steps, c.batch_size, c.seq_len = 15_625, 64, 32
  c.checkpoint_every, c.eval_every = 250, 250
  c.init_from = ""  # an HF BERT/RoBERTa directory (e.g. bert-base-uncased) or a clowlab workdir
  c.best_metric = "eval/spearman"
  c.mode = "train_and_eval"
  c.contrastive = ml_collections.ConfigDict({
      "objective": "unsup", "pooler": "cls_before_pooler", "mlp": "train_only",
      "temperature": 0.05, "hard_negative_weight": 0.0, "symmetric": False,
      "label_smoothing": 0.0, "impl": "sharded", "chunk_size": 0,
      "rrelu_lower": 1 / 8, "rrelu_upper": 1 / 3})
  c.data = ml_collections.ConfigDict({
      "train": [os.path.join(SHARED, "wikitext2", "valid.txt")], "split_sentences": True,
      "columns": []})
  c.eval = ml_collections.ConfigDict({"sts": [stsb("dev")]})
  c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay = 3e-5, 0, 0.0
  c.model = ml_collections.ConfigDict({"scan_layers": True})
  if variant == "sup":
    c.contrastive.objective, c.contrastive.mlp = "sup", "always"
    c.total_steps, c.batch_size, c.optim.lr = 1_611, 512, 5e-5
    c.data.train = ["nli_for_simcse.csv"]  # SimCSE's file: sent0, sent1, hard_neg
    c.data.split_sentences = False
  elif variant == "runlocal":
    c.total_steps, c.batch_size, c.seq_len = 300, 32, 32
    c.checkpoint_every, c.eval_every, c.log_every = 100, 100, 10
    c.tokenizer = "spm:2000"
    c.data.train = [os.path.join(DEMO, "en_wikitext2.txt")]
    c.eval.sts = [{"name": "sts_en_dev", "path": os.path.join(DEMO, "sts_en_dev.csv"),
                   "columns": ["sentence1", "sentence2", "score"]}]
    c.model = ml_collections.ConfigDict({
        "hidden_size": 128, "num_layers": 2, "num_heads": 2, "intermediate_size": 512,
        "max_position_embeddings": 64, "compute_dtype": "float32", "remat": False,
        "scan_layers": False})
    c.optim.lr, c.optim.warmup_steps = 1e-3, 30
  elif variant == "en_small":
    c.init_from = os.path.join(os.path.dirname(__file__), "..", "runs", "mlm_en_small")
    c.total_steps, c.batch_size, c.seq_len = 500, 64, 32
    c.checkpoint_every, c.eval_every = 100, 100
    c.data.train = [os.path.join(SHARED, "wikitext2", "valid.txt"),
                    os.path.join(SHARED, "parallel", "multi30k", "train.en.gz")]
    c.eval.sts = [stsb("dev"), stsb("test")]
    c.best_metric = "eval/stsb_en_dev/spearman"
    c.model = ml_collections.ConfigDict({"scan_layers": False})
    c.optim.lr = 1e-4
  elif variant:
    raise ValueError(f"configs/simcse.py: unknown variant {variant!r}; valid: '', sup, runlocal, "
                     "en_small (each optionally with ',layer_attention')")
  if method == "layer_attention":
    c.contrastive.pooler, c.contrastive.mlp = "layer_attention", "always"
  return c
