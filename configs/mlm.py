"""Masked-LM pretraining (the baseline). Variants:
  ''         BERT-base-size from scratch at TPU-pod scale (v5e-16 class), seq 512.
  'runlocal' a small encoder on the embedded demo text: minutes on a 2-core CPU.
  'en_small' the small raw English encoder pretrained on ../shared/data (wikitext-2 + STS-B +
             Multi30k English) that the sentence-embedding methods start from.
  'compare'  en_small's data at 4 x 128 under a 40-minute wall-clock budget: the MLM baseline of
             the MLM vs ELECTRA vs COCO-LM comparison (same variant in electra.py, coco_lm.py).
"""
import os

import ml_collections

from configs import common

DEMO = os.path.join(os.path.dirname(__file__), "..", "clowlab", "demo_data")
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")

VARIANTS = ("", "runlocal", "en_small", "compare")  # get_config args


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = common.get_config()
  c.method = "mlm"
  c.total_steps, c.batch_size, c.seq_len = 100_000, 2048, 512
  c.checkpoint_every = 2000
  c.tokenizer = "spm:32000"
  c.model = ml_collections.ConfigDict({
      "hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072,
      "max_position_embeddings": 512, "compute_dtype": "bfloat16", "remat": True})
  c.mlm = ml_collections.ConfigDict({"mask_prob": 0.15, "whole_word": False,
                                     "max_predictions": 0})
  c.data = ml_collections.ConfigDict({"train": [os.path.join(DEMO, "en_wikitext2.txt")],
                                      "eval": [os.path.join(DEMO, "en_wikitext2_test.txt")],
                                      "split_sentences": False})
  c.optim.lr, c.optim.warmup_steps = 5e-4, 10_000
  if arg == "runlocal":
    c.total_steps, c.batch_size, c.seq_len = 300, 32, 64
    c.checkpoint_every, c.log_every, c.eval_every = 100, 10, 100
    c.mode = "train_and_eval"
    c.tokenizer = "spm:2000"
    c.data.split_sentences = True
    c.model = ml_collections.ConfigDict({
        "hidden_size": 128, "num_layers": 2, "num_heads": 2, "intermediate_size": 512,
        "max_position_embeddings": 64, "compute_dtype": "float32", "remat": False,
        "scan_layers": False})
    c.optim.lr, c.optim.warmup_steps = 1e-3, 30
  elif arg == "en_small":
    c.total_steps, c.batch_size, c.seq_len = 20_000, 64, 128
    c.checkpoint_every = 1000
    c.tokenizer = "spm:8000"
    # WikiText-2 train is not in ../shared (see its MANIFEST): valid plus the Multi30k English
    # captions are our training text, the first 30 KB of test (the demo file) our held-out set.
    c.data.train = [os.path.join(SHARED, "wikitext2", "valid.txt"),
                    os.path.join(SHARED, "parallel", "multi30k", "train.en.gz")]
    c.mode, c.eval_every = "train_and_eval", 1000
    c.data.split_sentences = True
    c.model = ml_collections.ConfigDict({
        "hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024,
        "max_position_embeddings": 128, "compute_dtype": "float32", "remat": False,
        "scan_layers": False})
    c.optim.lr, c.optim.warmup_steps = 5e-4, 1000
  elif arg == "compare":
    # MLM vs ELECTRA vs COCO-LM on a 2-core CPU (configs/electra.py, configs/coco_lm.py inherit
    # it): en_small's data and tokenizer, a smaller model, constant lr after warmup, and a
    # wall-clock budget instead of a step count (same time for every method).
    c.total_steps, c.batch_size, c.seq_len = 1_000_000, 32, 64
    c.max_train_seconds = 2400.0
    c.checkpoint_every, c.log_every = 500, 20
    c.tokenizer = "spm:8000"
    c.data.train = [os.path.join(SHARED, "wikitext2", "valid.txt"),
                    os.path.join(SHARED, "parallel", "multi30k", "train.en.gz")]
    c.data.split_sentences = True
    c.model = ml_collections.ConfigDict({
        "hidden_size": 128, "num_layers": 4, "num_heads": 2, "intermediate_size": 512,
        "max_position_embeddings": 64, "compute_dtype": "float32", "remat": False,
        "scan_layers": False})
    c.optim.lr, c.optim.warmup_steps, c.optim.schedule = 5e-4, 300, "constant"
  elif arg:
    raise ValueError(f"configs/mlm.py: unknown variant {arg!r}; valid: '', runlocal, en_small, "
                     "compare")
  return c
