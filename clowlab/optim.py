"""Optimiser: AdamW with warmup + linear/cosine decay, weight decay masked off biases and
LayerNorm, global-norm clipping, and per-group learning rates (e.g. a larger one for a fresh
head). Config keys (config.optim): lr, warmup_steps, schedule, end_lr_ratio, weight_decay,
b1, b2, eps, clip_norm, groups = {name: {pattern, lr_multiplier}}.
"""
from __future__ import annotations

import re
from typing import Any

import jax
import optax

from clowlab.errors import ClowlabError

NO_DECAY = re.compile(r"(bias|scale|/ln/|_ln/|embeddings/(position|token_type))")


def path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def schedule(ocfg, total_steps: int) -> optax.Schedule:
  warmup = int(ocfg.warmup_steps)
  decay_steps = max(total_steps - warmup, 1)
  end = ocfg.lr * ocfg.get("end_lr_ratio", 0.0)
  kind = ocfg.get("schedule", "linear")
  if kind == "linear":
    decay = optax.linear_schedule(ocfg.lr, end, decay_steps)
  elif kind == "cosine":
    decay = optax.cosine_decay_schedule(ocfg.lr, decay_steps, alpha=ocfg.get("end_lr_ratio", 0.0))
  elif kind == "constant":
    decay = optax.constant_schedule(ocfg.lr)
  else:
    raise ClowlabError(f"clowlab: unknown config.optim.schedule {kind!r}; valid: constant, "
                       "cosine, linear.")
  if warmup <= 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, ocfg.lr, warmup), decay], [warmup])


def _group_labels(params: Any, groups: dict) -> Any:
  def label(path, _):
    p = path_str(path)
    for name, g in groups.items():
      if re.search(g["pattern"], p):
        return name
    return "default"
  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(ocfg, total_steps: int, params: Any) -> tuple[optax.GradientTransformation,
                                                                  optax.Schedule]:
  """Returns (transformation, base learning-rate schedule)."""
  base = schedule(ocfg, total_steps)
  decay_mask = jax.tree_util.tree_map_with_path(
      lambda p, _: not NO_DECAY.search(path_str(p)), params)

  def adamw(lr_fn):
    return optax.adamw(lr_fn, b1=ocfg.get("b1", 0.9), b2=ocfg.get("b2", 0.999),
                       eps=ocfg.get("eps", 1e-6), weight_decay=ocfg.get("weight_decay", 0.01),
                       mask=decay_mask)

  groups = dict(ocfg.get("groups", {}) or {})
  if groups:
    for name, g in groups.items():
      if "pattern" not in g or "lr_multiplier" not in g:
        raise ClowlabError(f"clowlab: config.optim.groups.{name} needs 'pattern' and "
                           "'lr_multiplier'.")
    txs = {name: adamw(lambda s, m=float(g["lr_multiplier"]): m * base(s))
           for name, g in groups.items()}
    txs["default"] = adamw(base)
    tx = optax.multi_transform(txs, _group_labels(params, groups))
  else:
    tx = adamw(base)
  if ocfg.get("clip_norm", 0):
    tx = optax.chain(optax.clip_by_global_norm(ocfg.clip_norm), tx)
  return tx, base
