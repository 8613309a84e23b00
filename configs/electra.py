"""ELECTRA (replaced-token detection with the MLM generator), COCO-LM's parent, with exactly
COCO-LM's generator, sizes, data and budget (configs/coco_lm.py, same variants) so the two
compare under one budget: no corrective LM head and no sequence contrast."""
import ml_collections

from configs import coco_lm

VARIANTS = coco_lm.VARIANTS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = coco_lm.get_config(arg)
  c.method = "electra"
  c.coco.clm, c.coco.scl = False, False
  # Without CLM and SCL the whole batch fits a v5e chip (7.8 GiB per chip, docs/aot.md).
  c.grad_accum_steps = 1
  return c
