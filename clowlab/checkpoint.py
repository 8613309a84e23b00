"""Checkpoints: the only module that imports orbax.

A workdir holds `checkpoints/<step>/` directories, each a composite of named items:
  params       the model params pytree (always present; what export reads)
  meta         JSON: format version, encoder config, tokenizer location, run config, source
  train_state  optimiser state, step, base PRNG key, method state, skipped-step count (training)
  data         JSON: the data iterator's state (training), so resume replays the same batches
Orbax writes each step into a temporary directory and renames it when complete, so a crash
mid-save never leaves a half-written step that looks finished; a save that fails (disk full,
permissions) raises `SaveError` naming the path and leaves the earlier steps intact. The meta
holds a fingerprint of every array and of the data state (`fingerprints`), checked on restore: a
flipped bit in a compressed chunk otherwise restores silently wrong values; and a checksum of
itself (`meta_checksum`), so a damaged config or fingerprint is caught too. A step that is
unreadable (missing, truncated or damaged files, a missing item) is skipped for the previous one
with a warning (`restore()`); an explicit step raises `ClowlabError` naming it instead.
Restoring takes target shardings, so a checkpoint written on one mesh restores onto another. A
training run holds `workdir_lock` for its whole life, so two runs never write the same workdir.

A remote workdir (`gs://bucket/run`) works the same way through epath and orbax/tensorstore,
except that orbax cannot rename on object storage: a step is written in place and is complete
once its `commit_success.txt` exists (orbax lists only those), and the lock is a lease file
(`workdir.workdir_lock`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import shutil
import sys
import traceback
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from clowlab import paths
from clowlab.errors import ClowlabError

FORMAT_VERSION = 1
# The workdir's layout and its lock live in workdir.py; re-exported for the callers of the
# checkpoint API.
from clowlab.workdir import CHECKPOINT_SUBDIR, checkpoint_dir  # noqa: E402,F401


class SaveError(ClowlabError):
  """Checkpoint `step` could not be written; the earlier steps are intact."""

  def __init__(self, message: str, step: int | None):
    super().__init__(message)
    self.step = step


class _Corrupt(Exception):
  """A step's arrays, data state or meta do not match the fingerprints written with them, or
  an item the step was saved with is missing."""


def _json_checksum(obj: Any) -> int:
  """crc32 of canonical JSON, the same before a JSON save and after the load."""
  canon = json.loads(json.dumps(obj))  # tuples -> lists, int keys -> str, as the file holds them
  return zlib.crc32(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode())


def _reason(e: BaseException) -> str:
  """One short line for an exception from orbax/tensorstore (whose messages run to pages)."""
  if isinstance(e, _Corrupt):
    return str(e)
  text = " ".join(str(e).split())
  return f"{type(e).__name__}: {text if len(text) <= 200 else text[:200] + ' ...'}"


def _leaf_fingerprint(x) -> jax.Array:
  """sum_i bits(x_i) * (2i + 1) mod 2^32: any change to one element changes it (the weight is
  odd, so invertible mod 2^32), and integer sums are exact, so it is the same on every mesh."""
  x = jnp.asarray(x)
  if x.dtype == jnp.bool_:
    bits = x.astype(jnp.uint32)
  else:
    width = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}.get(x.dtype.itemsize)
    if width is None:  # 64-bit leaves only exist with jax_enable_x64; fold both halves
      bits = jax.lax.bitcast_convert_type(x, jnp.uint32).sum(-1, dtype=jnp.uint32)
    else:
      bits = jax.lax.bitcast_convert_type(x, width).astype(jnp.uint32)
  if bits.ndim == 0:
    return bits
  idx = jnp.zeros(bits.shape, jnp.uint32)
  stride = 1
  for d in reversed(range(bits.ndim)):  # the flat index, built from iotas (shards cleanly)
    idx = idx + jax.lax.broadcasted_iota(jnp.uint32, bits.shape, d) * jnp.uint32(stride)
    stride *= bits.shape[d]
  return jnp.sum(bits * (idx * jnp.uint32(2) + jnp.uint32(1)), dtype=jnp.uint32)


_fingerprints_jit = jax.jit(lambda tree: jax.tree_util.tree_map(_leaf_fingerprint, tree))


def fingerprints(tree: Any) -> dict[str, int]:
  """{leaf path: 32-bit fingerprint} of a pytree of (sharded) arrays."""
  fps = jax.device_get(_fingerprints_jit(tree))
  return {jax.tree_util.keystr(path): int(v)
          for path, v in jax.tree_util.tree_flatten_with_path(fps)[0]}


def _check_meta(meta: Any, where) -> None:
  """Raises _Corrupt for a damaged meta, ClowlabError for one written by another format."""
  if not isinstance(meta, dict):
    raise _Corrupt(f"{where}: the meta item is not a JSON object ({type(meta).__name__})")
  if "meta_checksum" in meta:  # absent in checkpoints written before it existed
    rest = {k: v for k, v in meta.items() if k != "meta_checksum"}
    if meta["meta_checksum"] != _json_checksum(rest):
      raise _Corrupt(f"{where}: the meta item does not match its checksum (the file was changed "
                     "or damaged after the save)")
  elif "format_version" not in meta:
    raise _Corrupt(f"{where}: the meta item has no format_version")
  if meta.get("format_version") != FORMAT_VERSION:
    raise ClowlabError(f"clowlab: checkpoint {where} has format version "
                       f"{meta.get('format_version')!r}; this clowlab reads {FORMAT_VERSION}. "
                       "Read it with the clowlab version that wrote it.")
  fps = meta.get("fingerprints")
  if fps is not None and not (
      isinstance(fps, dict)
      and all(isinstance(fps.get(k), dict) and all(isinstance(v, int) for v in fps[k].values())
              for k in ("params", "train_state") if k in fps)
      and isinstance(fps.get("data", 0), int)):
    raise _Corrupt(f"{where}: the meta item's fingerprints are malformed")


def _check_fingerprints(name: str, tree: Any, want: dict[str, int] | None, where) -> None:
  if want is None:  # written before fingerprints existed
    return
  got = fingerprints(tree)
  bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
  if bad:
    raise _Corrupt(f"{where}: {name} arrays {', '.join(bad[:3])}"
                   f"{' ...' if len(bad) > 3 else ''} do not match their saved fingerprints "
                   "(the files were changed or damaged after the save)")


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
    # cleanup_tmp_directories: a save interrupted by a crash or a full disk leaves only a
    # temporary directory, which orbax never lists as a step; it is removed at the next start.
    options = ocp.CheckpointManagerOptions(
        create=not read_only, read_only=read_only, enable_async_checkpointing=async_save,
        cleanup_tmp_directories=not read_only,
        preservation_policy=ocm.AnyPreservationPolicy(policies) if policies else None)
    self.directory = checkpoint_dir(workdir)
    self._remote = paths.is_remote(workdir)
    self._in_flight = None
    self._read_only = read_only
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
    """Starts writing `step` (in the background with async_save); raises SaveError naming the
    directory if this or an earlier background save failed."""
    fps = {"params": fingerprints(params)}
    if train_state is not None:
      fps["train_state"] = fingerprints(train_state)
    if data_state is not None:
      fps["data"] = _json_checksum(data_state)
    meta = {"format_version": FORMAT_VERSION, **meta, "fingerprints": fps}
    meta["meta_checksum"] = _json_checksum(meta)
    items = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta)}
    if train_state is not None:
      items["train_state"] = ocp.args.StandardSave(train_state)
    if data_state is not None:
      items["data"] = ocp.args.JsonSave(data_state)
    self.wait()  # a failed background save is reported under its own step
    self._in_flight = step
    with self._save_errors(step):
      self._mngr.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)

  @contextlib.contextmanager
  def _save_errors(self, step):
    try:
      yield
    except ClowlabError:
      raise
    except Exception as e:  # noqa: BLE001 - OSError from tensorstore arrives wrapped in others
      good = [s for s in self._steps_on_disk() if s != step]
      if step is not None and jax.process_index() == 0:  # free the space the attempt took
        for tmp in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
          _rmtree(tmp)
        partial = self.directory / str(step)  # object storage: written in place, uncommitted
        if self._remote and partial.exists() and not ocp.step.is_path_finalized(partial):
          _rmtree(partial)
      why = str(e)
      why = why if len(why) <= 400 else why[:200] + " ... " + why[-200:]  # keep the OS reason
      raise SaveError(
          f"clowlab: saving checkpoint step {step} to {self.directory} failed "
          f"({type(e).__name__}: {why}). The last complete checkpoint "
          f"({'step ' + str(good[-1]) if good else 'none'}) is intact. Free disk space or fix "
          f"the permissions of {self.directory}, then resume with the same command; set "
          "--config.on_save_error=continue to keep training without checkpoints meanwhile.",
          step) from e

  def _steps_on_disk(self) -> list[int]:
    """Finished steps as the directory shows them now (the manager's list may be stale)."""
    if not self.directory.is_dir():
      return []
    done = ((lambda p: ocp.step.is_path_finalized(p)) if self._remote else
            (lambda p: (p / "_CHECKPOINT_METADATA").exists()))
    return sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit() and done(p))

  def restore(self, step: int | None = None, *, params_target: Any = None,
              train_state_target: Any = None, fallback: bool = True) -> dict[str, Any]:
    """{"params", "meta", "step"[, "train_state", "data"]} of `step` (default latest).

    With `fallback`, an unreadable latest step (missing, truncated or damaged files, a missing
    item, arrays or meta that do not match their fingerprints) is skipped with a warning and
    the previous one is restored instead; `ClowlabError` if no step is readable. An explicit
    `step` (or fallback=False) never falls back: `ClowlabError` naming the step's directory.
    "train_state" and "data" (training's resume) come only with `train_state_target`, and then
    must be whole.
    """
    steps = self._listed_steps(step)
    candidates = [step] if step is not None else (steps[::-1] if fallback else steps[-1:])
    r, skipped = self._first_readable(
        candidates, lambda s: self._restore_step(s, params_target, train_state_target),
        explicit=step is not None or not fallback)
    if step is None:
      stray = [p for p in self._stray_entries() if int(p.name) > r["step"]]
      for p in stray:
        logging.warning("clowlab: %s is not a checkpoint step (a file where a step directory "
                        "belongs); ignoring it.", p)
      if not self._read_only and (skipped or stray):
        # A training run resumes here and saves these steps again: move the unreadable ones
        # aside (kept for inspection) so the new saves neither collide with them nor have the
        # keep-last-K policy count them.
        self._set_aside([self.directory / str(s) for s in skipped] + stray, r["step"])
    return r

  def read_meta(self, step: int | None = None) -> dict[str, Any]:
    """The JSON meta of `step` (default: of the latest step whose meta is readable, with a
    warning for each one skipped) without reading any array."""
    steps = self._listed_steps(step)
    return self._first_readable([step] if step is not None else steps[::-1], self._read_meta,
                                explicit=step is not None)[0]

  def _stray_entries(self) -> list[pathlib.Path]:
    """Step-named entries orbax does not list (files where a step directory belongs). On object
    storage an unlisted step directory is a save in progress or cut short (no commit file; a
    training run's manager deletes it at start): not stray."""
    listed = set(self.all_steps())
    return sorted((p for p in self.directory.iterdir()
                   if p.name.isdigit() and int(p.name) not in listed
                   and not (self._remote and p.is_dir())),
                  key=lambda p: int(p.name)) if self.directory.is_dir() else []

  def _set_aside(self, entries: list[pathlib.Path], restored: int) -> None:
    if jax.process_index() == 0:
      for src in entries:
        dst, i = src.with_name(f"{src.name}.unreadable"), 1
        while dst.exists():
          dst, i = src.with_name(f"{src.name}.unreadable-{i}"), i + 1
        if self._remote:
          src.rename(dst)  # object storage: a copy, then the source is deleted
        else:
          os.replace(src, dst)
        logging.warning("clowlab: moved the unreadable checkpoint %s to %s; training resumes "
                        "from step %d and writes that step again.", src, dst.name, restored)
    self._mngr.reload()

  def _listed_steps(self, step: int | None) -> list[int]:
    steps = self.all_steps()
    if not steps and self._stray_entries():
      raise ClowlabError(
          f"clowlab: no readable checkpoint in {self.directory} (only "
          f"{', '.join(p.name for p in self._stray_entries())}, files where step directories "
          "belong). Restore the checkpoints from a backup or start a new workdir.")
    if not steps:
      raise ClowlabError(f"clowlab: no checkpoint in {self.directory}. Point --workdir at a "
                         "directory written by clowlab (e.g. by `python -m clowlab.convert "
                         "import` or a training run).")
    if step is not None and step not in steps:
      raise ClowlabError(f"clowlab: step {step} is not in {self.directory}; available: {steps}. "
                         "Pass one of those, or no step for the latest readable one.")
    return steps

  def _first_readable(self, candidates: list[int], read, explicit: bool):
    """(read(s) of the first candidate step that is readable, the steps skipped before it);
    ClowlabError if none is."""
    errors = []
    # Before the reads, not after the first failure: concurrent array reads can fail (and log
    # from orbax's threads) before the first exception reaches this loop.
    _silence_abandoned_reads()
    for s in candidates:
      try:
        return read(s), [s for s, _ in errors]
      except ClowlabError:
        raise
      except Exception as e:  # noqa: BLE001 - any read failure means "try the previous step"
        errors.append((s, _reason(e)))
        if s != candidates[-1]:
          logging.warning("clowlab: checkpoint step %d in %s is unreadable (%s); falling back "
                          "to the previous one.", s, self.directory, _reason(e))
    if explicit:
      raise ClowlabError(
          f"clowlab: checkpoint {self.directory / str(candidates[0])} is unreadable "
          f"({errors[0][1]}). Restore it from a backup, or use another step (available: "
          f"{self.all_steps()}; restoring without a step falls back to the last readable one).")
    whys = "; ".join(f"step {s}: {why}" for s, why in errors)
    raise ClowlabError(f"clowlab: no readable checkpoint in {self.directory} ({whys}). Restore "
                       "the checkpoints from a backup or start a new workdir.")

  def _read_meta(self, step: int) -> dict[str, Any]:
    with _quiet_orbax():  # it warns about every item not asked for
      meta = self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    _check_meta(meta, self.directory / str(step))
    return meta

  def _restore_step(self, step, params_target, train_state_target):
    where = self.directory / str(step)
    with _quiet_orbax():
      names = set(self._mngr.item_metadata(step).keys())
    if "meta" not in names:
      raise _Corrupt(f"{where} has no meta item")
    meta = self._read_meta(step)  # before any array: a damaged meta says nothing is trustworthy
    fps = meta.get("fingerprints") or {}
    items = {"params": ocp.args.StandardRestore(params_target)}
    if train_state_target is not None:  # resuming training: the training state must be whole
      if "train_state" not in names:  # deleted, or never saved (`clowlab.convert import`)
        raise _Corrupt(f"{where} has no train_state item to resume training from")
      items["train_state"] = ocp.args.StandardRestore(train_state_target)
      if "data" in names:
        items["data"] = ocp.args.JsonRestore()
      elif "data" in fps:
        raise _Corrupt(f"{where}: the data item is missing")
    if "params" not in names:
      raise _Corrupt(f"{where}: the params item is missing")
    with _quiet_orbax():
      restored = self._mngr.restore(step, args=ocp.args.Composite(**items))
    _check_fingerprints("params", restored["params"], fps.get("params"), where)
    if "train_state" in items:
      _check_fingerprints("train_state", restored["train_state"], fps.get("train_state"), where)
    if "data" in items and "data" in fps and _json_checksum(restored["data"]) != fps["data"]:
      raise _Corrupt(f"{where}: the data state does not match its saved fingerprint (the file "
                     "was changed or damaged after the save)")
    out = {"params": restored["params"], "meta": meta, "step": step}
    for k in ("train_state", "data"):
      if k in items:
        out[k] = restored[k]
    return out

  def wait(self) -> None:
    """Blocks until background saves are on disk; SaveError if one failed."""
    if self._mngr:
      with self._save_errors(self._in_flight):
        self._mngr.wait_until_finished()

  def close(self) -> None:
    if self._mngr:
      self._mngr.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _rmtree(p) -> None:
  try:
    if isinstance(p, pathlib.Path):
      shutil.rmtree(p, ignore_errors=True)
    else:
      p.rmtree()
  except Exception as e:  # noqa: BLE001 - best effort: the save error is what gets reported
    logging.warning("clowlab: could not remove %s (%s).", p, _reason(e))


_SILENCED = False


def _silence_abandoned_reads() -> None:
  """After a failed orbax read, its other array reads finish on a closed event loop: they would
  print tracebacks ("Event loop is closed", "Task exception was never retrieved") after our one
  ClowlabError, at any later moment. Drops exactly those (installed before the first read)."""
  global _SILENCED
  if _SILENCED:
    return
  _SILENCED = True
  prev = sys.unraisablehook

  def hook(u):
    tb = "".join(traceback.format_tb(u.exc_traceback)) if u.exc_traceback else ""
    if not (isinstance(u.exc_value, RuntimeError) and str(u.exc_value) == "Event loop is closed"
            and "call_soon_threadsafe" in tb):
      prev(u)

  sys.unraisablehook = hook

  def from_orbax(record):
    if "exception was never retrieved" not in record.getMessage():
      return True
    text = record.getMessage() + (
        "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else "")
    return not any(k in text for k in ("orbax", "tensorstore", "OCDBT"))

  logging.getLogger("asyncio").addFilter(from_orbax)


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
