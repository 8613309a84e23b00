"""Checkpoints: the only module that imports orbax.

A workdir holds `checkpoints/<step>/` directories, each a composite of named items:
  params       the model params pytree (always present; what export reads)
  meta         JSON: format version, encoder config, tokenizer location, run config, source
  train_state  optimiser state, step, base PRNG key, method state, skipped-step count (training)
  data         JSON: the data iterator's state (training), so resume replays the same batches
Orbax writes each step into a temporary directory and renames it when complete, so a crash
mid-save never leaves a half-written step that looks finished. Restoring takes target
shardings, so a checkpoint written on one mesh restores onto another. A training run holds
`workdir_lock` for its whole life, so two runs never write the same workdir.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pathlib
from typing import Any

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from clowlab.errors import ClowlabError

FORMAT_VERSION = 1
CHECKPOINT_SUBDIR = "checkpoints"
LOCK_FILE = ".clowlab.lock"


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike, enabled: bool = True):
  """Holds an exclusive lock on `workdir` (an flock on <workdir>/.clowlab.lock) or refuses.

  The kernel drops the lock when the holder exits, however it dies (SIGKILL included), so a
  crashed run never leaves a stale lock. The file records the holder's pid and host for the
  message. enabled=False (processes other than 0 of a multi-host run) does nothing.
  """
  if not enabled:
    yield
    return
  import fcntl  # noqa: PLC0415 - POSIX only, like the TPU VMs and CPU hosts we run on
  import socket  # noqa: PLC0415
  path = pathlib.Path(workdir) / LOCK_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown"
      raise ClowlabError(
          f"clowlab: workdir {workdir} is in use by another run ({holder}; lock {path}). Wait "
          "for it to finish or stop it, or pass another --workdir; a run that died has already "
          "released the lock.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}".encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the flock


def checkpoint_dir(workdir: str | os.PathLike) -> pathlib.Path:
  return pathlib.Path(workdir).absolute() / CHECKPOINT_SUBDIR


class Manager:
  """Saves and restores the train state of one workdir; keeps the last K (+ the best)."""

  def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int | None = 3,
               best_metric: str | None = None, best_mode: str = "max",
               async_save: bool = False, read_only: bool = False):
    policies = [ocm.LatestN(max_to_keep)] if max_to_keep else []
    if best_metric and max_to_keep:
      # A save before the first evaluation (or a metric the evaluation never reports, which
      # train.py warns about) ranks last instead of failing the save.
      worst = float("inf") if best_mode == "min" else float("-inf")
      policies.append(ocm.BestN(get_metric_fn=lambda m: m.get(best_metric, worst), n=1,
                                reverse=best_mode == "min",
                                keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        create=not read_only, read_only=read_only, enable_async_checkpointing=async_save,
        preservation_policy=ocm.AnyPreservationPolicy(policies) if policies else None)
    self.directory = checkpoint_dir(workdir)
    if read_only and not self.directory.is_dir():
      self._mngr = None
    else:
      self._mngr = ocp.CheckpointManager(self.directory, options=options)

  def all_steps(self) -> list[int]:
    return sorted(self._mngr.all_steps()) if self._mngr else []

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, step: int, *, params: Any, meta: dict[str, Any], train_state: Any = None,
           data_state: dict | None = None, metrics: dict[str, float] | None = None) -> None:
    items = {"params": ocp.args.StandardSave(params),
             "meta": ocp.args.JsonSave({"format_version": FORMAT_VERSION, **meta})}
    if train_state is not None:
      items["train_state"] = ocp.args.StandardSave(train_state)
    if data_state is not None:
      items["data"] = ocp.args.JsonSave(data_state)
    self._mngr.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)

  def restore(self, step: int | None = None, *, params_target: Any = None,
              train_state_target: Any = None, fallback: bool = True) -> dict[str, Any]:
    """{"params", "meta", "step"[, "train_state", "data"]} of `step` (default latest).

    With `fallback`, an unreadable latest step (e.g. truncated files) is skipped with a warning
    and the previous one is restored instead; an explicit `step` never falls back.
    """
    steps = self.all_steps()
    if not steps:
      raise ClowlabError(f"clowlab: no checkpoint in {self.directory}. Point --workdir at a "
                         "directory written by clowlab (e.g. by `python -m clowlab.convert "
                         "import` or a training run).")
    if step is not None and step not in steps:
      raise ClowlabError(f"clowlab: step {step} is not in {self.directory}; available: {steps}.")
    candidates = [step] if step is not None else (steps[::-1] if fallback else steps[-1:])
    errors = []
    for s in candidates:
      try:
        return self._restore_step(s, params_target, train_state_target)
      except ClowlabError:
        raise
      except Exception as e:  # noqa: BLE001 - any read failure means "try the previous step"
        errors.append(f"step {s}: {type(e).__name__}: {str(e)[:200]}")
        if s != candidates[-1]:
          logging.warning("clowlab: checkpoint step %d in %s is unreadable (%s); falling back "
                          "to the previous one.", s, self.directory, e)
    raise ClowlabError(f"clowlab: no readable checkpoint in {self.directory} ("
                       + "; ".join(errors) + "). Restore from a backup or start a new workdir.")

  def read_meta(self, step: int | None = None) -> dict[str, Any]:
    """The JSON meta of `step` (default latest) without reading any array."""
    step = self.latest_step() if step is None else step
    with _quiet_orbax():  # it warns about every item not asked for
      return self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def _restore_step(self, step, params_target, train_state_target):
    names = set(self._mngr.item_metadata(step).keys()) if hasattr(
        self._mngr, "item_metadata") else {"params", "meta"}
    items = {"params": ocp.args.StandardRestore(params_target), "meta": ocp.args.JsonRestore()}
    if train_state_target is not None and "train_state" in names:
      items["train_state"] = ocp.args.StandardRestore(train_state_target)
    if "data" in names:
      items["data"] = ocp.args.JsonRestore()
    with _quiet_orbax():
      restored = self._mngr.restore(step, args=ocp.args.Composite(**items))
    meta = restored["meta"]
    if meta is None or meta.get("format_version") != FORMAT_VERSION:
      raise ClowlabError(f"clowlab: checkpoint {self.directory / str(step)} has format version "
                         f"{None if meta is None else meta.get('format_version')}; this clowlab "
                         f"reads {FORMAT_VERSION}.")
    out = {"params": restored["params"], "meta": meta, "step": step}
    for k in ("train_state", "data"):
      if k in items:
        out[k] = restored[k]
    return out

  def wait(self) -> None:
    if self._mngr:
      self._mngr.wait_until_finished()

  def close(self) -> None:
    if self._mngr:
      self._mngr.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


@contextlib.contextmanager
def _quiet_orbax():
  absl_logger = logging.getLogger("absl")
  old = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    absl_logger.setLevel(old)


def latest_step(workdir: str | os.PathLike) -> int | None:
  with Manager(workdir, read_only=True, max_to_keep=None) as m:
    return m.latest_step()


def save(workdir: str | os.PathLike, step: int, params: Any, meta: dict[str, Any]) -> None:
  """Saves params + JSON meta as step `step` and waits until it is on disk."""
  with Manager(workdir, max_to_keep=None) as m:
    m.save(step, params=params, meta=meta)
    m.wait()


def restore(workdir: str | os.PathLike, step: int | None = None,
            params_target: Any = None) -> tuple[Any, dict[str, Any], int]:
  """(params, meta, step) of a workdir's checkpoint (latest by default)."""
  with Manager(workdir, read_only=True, max_to_keep=None) as m:
    r = m.restore(step, params_target=params_target)
  return r["params"], r["meta"], r["step"]
