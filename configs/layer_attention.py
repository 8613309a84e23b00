"""Contrastive learning with layer-wise attention pooling: the SimCSE variants of
configs/simcse.py ('', sup, runlocal, en_small) with the layer-wise attention pooler and its
MLP, in training and at evaluation (configs/simcse.py:<variant>,layer_attention is the same)."""
import ml_collections

from configs import simcse

VARIANTS = simcse.VARIANTS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return simcse.get_config(",".join(p for p in (arg or "", "layer_attention") if p))
