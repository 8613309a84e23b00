"""Evaluation of a workdir's checkpoint (config.mode=eval) and during training.

Each method brings its evaluator (`Method.evaluate`); results go to metrics.jsonl with
split "eval" and are printed.
"""
from __future__ import annotations

import os

import jax

from clowlab import checkpoint, metrics as metrics_lib, methods, sharding
from clowlab.data import tokenizers
from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc


def run_evaluator(method, params, ecfg, cfg, ctx, mesh) -> dict[str, float]:
  if method.evaluate is None:
    raise ClowlabError(f"clowlab: method {method.name!r} has no evaluator; use "
                       "--config.mode=train.")
  return method.evaluate(params, ecfg, cfg, ctx, mesh)


def evaluate_workdir(cfg, workdir: str, step: int | None = None) -> dict[str, float]:
  """Evaluates the latest (or given) checkpoint of workdir with cfg's evaluator and data."""
  method = methods.get(cfg.method)
  mesh = sharding.mesh_from_config(cfg)
  with checkpoint.Manager(workdir, read_only=True, max_to_keep=None) as m:
    meta = m.read_meta(step) if m.latest_step() is not None else None
    if meta is None:
      raise ClowlabError(f"clowlab: no checkpoint in {checkpoint.checkpoint_dir(workdir)} to "
                         "evaluate. Train first (--config.mode=train_and_eval).")
    ecfg = enc.EncoderConfig.from_dict(meta["encoder_config"])
    r = m.restore(step)
  params = jax.device_put(r["params"], sharding.param_sharding(r["params"], mesh))
  tokenizer = tokenizers.load_tokenizer(os.path.join(workdir, meta.get("tokenizer") or "tokenizer"))
  ctx = methods.DataContext(tokenizer=tokenizer, process_index=jax.process_index(),
                            process_count=jax.process_count(),
                            cache_dir=cfg.get("cache_dir", "") or os.path.join(workdir, "cache"))
  results = run_evaluator(method, params, ecfg, cfg, ctx, mesh)
  metrics_lib.Writer(workdir).write(r["step"], results, split="eval")
  if jax.process_index() == 0:
    print(f"clowlab: eval at step {r['step']}: " +
          ", ".join(f"{k}={v:.4f}" for k, v in results.items()), flush=True)
  return results
