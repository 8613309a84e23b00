"""COCO-LM pretraining (configs/electra.py is its ELECTRA baseline with the same generator).
Variants:
  ''         base size from scratch at TPU-pod scale (12 x 768 main model, 4-layer generator,
             seq 512, the authors' loss weights), or continued from --config.init_from.
  'runlocal' a small model on the embedded demo text: a few minutes on a 2-core CPU.
  'en_small' the en_small MLM encoder's size and data (configs/mlm.py:en_small), from scratch.
  'compare'  configs/mlm.py:compare (4 x 128, 40-minute wall-clock budget), 1-layer generator:
             the MLM vs ELECTRA vs COCO-LM comparison.
"""
import ml_collections

from configs import mlm as mlm_config

VARIANTS = ("", "runlocal", "en_small", "compare")  # get_config args


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = mlm_config.get_config(arg)  # same sizes, data, tokenizer and budget as the MLM baseline
  c.method = "coco_lm"
  c.coco = ml_collections.ConfigDict({
      "generator_layers": 0,            # 0 = a third of the main model's layers (4 of 12)
      "generator_sample_mode": "eval",  # sampling logits from a dropout-free generator pass
      "clm": True, "scl": True, "stop_copy_grad": True,
      "crop_ratio": 0.9, "temperature": 1.0, "scl_dim": 0, "impl": "sharded",
      "generator_weight": 1.0, "binary_weight": 50.0, "clm_weight": 1.0, "scl_weight": 1.0})
  c.data.eval = []  # judged by finetuning (python -m clowlab.evaluate --task=classification)
  c.mode = "train"
  if not arg:
    # The batch of 2048 x 512 in 4 micro-batches: in one, the step needs >= 28.2 GiB per v5e chip
    # (16 GiB); in four, 12.3 GiB (python -m clowlab.aot --config=configs/coco_lm.py, docs/aot.md).
    # SCL's negatives are then the 511 other rows of a micro-batch.
    c.grad_accum_steps = 4
  return c
