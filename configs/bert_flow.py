"""BERT-flow (and the BERT-whitening baseline, fitted on the same sentences). Variants:
  ''         the paper's unsupervised setting: a frozen encoder from --config.init_from (e.g.
             bert-base-uncased), first-last-avg pooling, a 3-level x 3-step additive Glow of
             width 32 trained by MLE on the STS-B train+dev+test sentences (no scores), AdamW lr
             1e-3, batch 64 sentences (32 pairs), one epoch; judged on STS-B dev and test.
  'runlocal' a small fresh encoder on the embedded demo data: a minute or two on a 2-core CPU;
             shows the machinery (bits/dim falling, ActNorm init, export), not embedding quality.
  'stsb'     '' on a CPU: unrolled layers, features cached (set --config.init_from).
  'stsb_zh'  'stsb' on the Chinese (machine-translated) STS-B sentences, for a Chinese encoder.
  'en_small' 'stsb' on the en_small MLM encoder (configs/mlm.py:en_small in runs/mlm_en_small).
"""
import os

import ml_collections

from configs import common
from configs.simcse import DEMO, stsb

VARIANTS = ("", "runlocal", "stsb", "stsb_zh", "en_small")  # get_config args


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or ""
  c = common.get_config()
  c.method = "bert_flow"
  c.mode = "train_and_eval"
  c.total_steps, c.batch_size, c.seq_len = 270, 64, 64
  c.checkpoint_every, c.eval_every = 100, 0
  c.init_from = ""  # the frozen encoder: an HF BERT/RoBERTa directory or a clowlab workdir
  c.best_metric = ""
  c.flow = ml_collections.ConfigDict({
      "pooler": "first_last_avg", "levels": 3, "depth": 3, "coupling": "additive", "width": 32,
      "permutation": "reverse", "logscale_factor": 3.0, "features": "cached",
      "whitening_dims": [0, 256], "embed": "flow", "embed_whitening_dim": 0})
  c.data = ml_collections.ConfigDict({"train": [], "split_sentences": False,
                                      "from_eval_sts": True})
  c.eval = ml_collections.ConfigDict({"sts": [stsb("train"), stsb("dev"), stsb("test")]})
  # The authors' flow optimiser: AdamW, constant lr 1e-3, weight decay 0.01, clip 1.0.
  c.optim.lr, c.optim.warmup_steps, c.optim.schedule = 1e-3, 0, "constant"
  c.optim.weight_decay, c.optim.clip_norm = 0.01, 1.0
  c.model = ml_collections.ConfigDict({"scan_layers": True})
  if variant == "runlocal":
    c.total_steps, c.batch_size, c.seq_len = 300, 64, 32
    c.checkpoint_every, c.log_every = 100, 20
    c.tokenizer = "spm:2000"
    c.data.train = [os.path.join(DEMO, "en_wikitext2.txt")]
    c.data.split_sentences = True
    c.eval.sts = [{"name": "sts_en_dev", "path": os.path.join(DEMO, "sts_en_dev.csv"),
                   "columns": ["sentence1", "sentence2", "score"]}]
    c.flow.whitening_dims = [0, 64]
    c.model = ml_collections.ConfigDict({
        "hidden_size": 128, "num_layers": 2, "num_heads": 2, "intermediate_size": 512,
        "max_position_embeddings": 64, "compute_dtype": "float32", "remat": False,
        "scan_layers": False})
  elif variant in ("stsb", "stsb_zh", "en_small"):
    c.model = ml_collections.ConfigDict({"scan_layers": False})
    if variant == "stsb_zh":
      c.eval.sts = [stsb("train", "zh"), stsb("dev", "zh"), stsb("test", "zh")]
    if variant == "en_small":
      c.init_from = os.path.join(os.path.dirname(__file__), "..", "runs", "mlm_en_small")
      c.flow.whitening_dims = [0, 128]  # its hidden size is 256
  elif variant:
    raise ValueError(f"configs/bert_flow.py: unknown variant {variant!r}; valid: '', runlocal, "
                     "stsb, stsb_zh, en_small.")
  return c
