"""Checkpoints: the only module that imports orbax.

A workdir holds `checkpoints/<step>/` directories, each a composite of named items:
  params  -- the model params pytree (always present; what export reads)
  meta    -- JSON: format version, encoder config, tokenizer location, run config, source
and any further items a trainer adds (optimiser state, PRNG key, data-iterator state).
Orbax writes each step into a temporary directory and renames it when complete, so a crash
mid-save never leaves a half-written step that looks finished.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any

import orbax.checkpoint as ocp

from clowlab.errors import ClowlabError

FORMAT_VERSION = 1
CHECKPOINT_SUBDIR = "checkpoints"


def checkpoint_dir(workdir: str | os.PathLike) -> pathlib.Path:
  return pathlib.Path(workdir).absolute() / CHECKPOINT_SUBDIR


def _manager(workdir, *, max_to_keep: int | None = None, read_only: bool = False,
             async_save: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                         read_only=read_only,
                                         enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def latest_step(workdir: str | os.PathLike) -> int | None:
  if not checkpoint_dir(workdir).is_dir():
    return None
  with _manager(workdir, read_only=True) as mngr:
    return mngr.latest_step()


def save(workdir: str | os.PathLike, step: int, params: Any, meta: dict[str, Any],
         extra: dict[str, Any] | None = None, max_to_keep: int | None = None) -> pathlib.Path:
  """Saves params + JSON meta (+ extra pytree items) as step `step`; blocks until written."""
  meta = {"format_version": FORMAT_VERSION, **meta}
  items = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta)}
  for name, tree in (extra or {}).items():
    items[name] = ocp.args.StandardSave(tree)
  with _manager(workdir, max_to_keep=max_to_keep) as mngr:
    mngr.save(step, args=ocp.args.Composite(**items))
    mngr.wait_until_finished()
  return checkpoint_dir(workdir) / str(step)


def restore(workdir: str | os.PathLike, step: int | None = None,
            params_target: Any = None) -> tuple[Any, dict[str, Any], int]:
  """Restores (params, meta, step); the latest step when `step` is None.

  `params_target` (a pytree of arrays or jax.ShapeDtypeStruct with shardings) restores directly
  into that structure and sharding; without it arrays come back as saved.
  """
  if latest_step(workdir) is None:
    raise ClowlabError(f"clowlab: no checkpoint in {checkpoint_dir(workdir)}. Point --workdir at "
                       "a directory written by clowlab (e.g. by `python -m clowlab.convert "
                       "import` or a training run).")
  with _manager(workdir, read_only=True) as mngr:
    step = mngr.latest_step() if step is None else step
    if step not in mngr.all_steps():
      raise ClowlabError(f"clowlab: step {step} is not in {checkpoint_dir(workdir)}; "
                         f"available: {sorted(mngr.all_steps())}.")
    restored = mngr.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(params_target), meta=ocp.args.JsonRestore()))
  meta = restored["meta"]
  if meta.get("format_version") != FORMAT_VERSION:
    raise ClowlabError(f"clowlab: checkpoint {checkpoint_dir(workdir) / str(step)} has format "
                       f"version {meta.get('format_version')}, this clowlab reads "
                       f"{FORMAT_VERSION}.")
  return restored["params"], meta, step
