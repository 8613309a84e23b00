"""The workdir layout, in one place: what a clowlab workdir holds and where, and the lock a
training run holds on it. train, evaluate, embed, convert and aot find a workdir's parts here.

    <workdir>/checkpoints/<step>/   orbax steps (checkpoint.py writes and reads them)
    <workdir>/tokenizer/            the run's tokenizer (on gs://: complete once
                                    tokenizer/.clowlab_complete exists)
    <workdir>/metrics.jsonl, tb/    metrics (metrics.py)
    <workdir>/.clowlab.lock         the flock (local) or lease (gs://) of the run writing it
    <workdir>/cache/                tokenized data (local workdirs; paths.default_cache_dir)

A remote workdir's local-only files (data cache, tokenizer copy, metrics between uploads) live
in `paths.local_dir(workdir)`.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import threading
import time
import uuid

from clowlab import paths
from clowlab.errors import ClowlabError

TOKENIZER_SUBDIR = "tokenizer"
# Written last into a remote workdir's tokenizer/: an upload cut short is not a tokenizer.
TOKENIZER_COMPLETE = ".clowlab_complete"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_SUBDIR = "checkpoints"
LOCK_FILE = ".clowlab.lock"


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike, enabled: bool = True):
  """Holds an exclusive lock on `workdir` (an flock on <workdir>/.clowlab.lock) or refuses.

  The kernel drops the lock when the holder exits, however it dies (SIGKILL included), so a
  crashed run never leaves a stale lock. The file records the holder's pid and host for the
  message. enabled=False (processes other than 0 of a multi-host run) does nothing. A remote
  workdir has no flock: it gets a lease (`_lease_lock`).
  """
  if not enabled:
    yield
    return
  if paths.is_remote(workdir):
    with _lease_lock(paths.path(workdir) / LOCK_FILE, workdir):
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


# Object storage has no flock and cannot tell whether a holder is alive: a run holds a lease
# file there, renewed every LEASE_RENEW_S; one not renewed for LEASE_TTL_S belongs to a dead
# run and is taken over (at once if its holder was a dead process on this same host).
LEASE_TTL_S = 300.0
LEASE_RENEW_S = 60.0
LEASE_SETTLE_S = 2.0  # wait between writing the lease and reading it back (see _lease_lock)


def _read_lease(path) -> dict | None:
  try:
    holder = json.loads(path.read_text())
  except FileNotFoundError:
    return None
  except (ValueError, UnicodeDecodeError):  # damaged: a lease nobody can renew
    return {}
  return holder if isinstance(holder, dict) else {}


def _lease_is_live(holder: dict, now: float) -> bool:
  import socket  # noqa: PLC0415
  if not holder or not isinstance(holder.get("renewed"), (int, float)):
    return False
  if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
    try:
      os.kill(holder["pid"], 0)
    except ProcessLookupError:
      return False  # its holder died on this host: no need to wait for the lease to expire
    except PermissionError:
      pass
  return now - holder["renewed"] < LEASE_TTL_S


@contextlib.contextmanager
def _lease_lock(path, workdir):
  """A lease on a remote workdir: <workdir>/.clowlab.lock holds JSON naming the holder (token,
  pid, host) and when it last renewed it; a live lease refuses a second run. Object storage
  has no compare-and-swap through epath, so two runs starting within LEASE_SETTLE_S of each
  other are separated by writing, waiting and reading back: the last writer keeps the lease,
  the other refuses. The lease is deleted on exit; a run that dies leaves it to expire."""
  import socket  # noqa: PLC0415

  def refuse(holder, now):
    age = now - holder.get("renewed", now)
    who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
    raise ClowlabError(
        f"clowlab: workdir {workdir} is in use by another run ({who}, lease renewed {age:.0f} s "
        f"ago; lock {path}). Wait for it to finish or stop it, or pass another --workdir. A run "
        f"that died (e.g. a preempted VM) loses its lease {LEASE_TTL_S:.0f} s after its last "
        f"renewal (in {max(LEASE_TTL_S - age, 0):.0f} s); if you are sure it is dead, delete "
        f"{path} to take over now.")

  holder = _read_lease(path)
  if holder is not None and _lease_is_live(holder, time.time()):
    refuse(holder, time.time())
  token = uuid.uuid4().hex
  mine = {"token": token, "pid": os.getpid(), "host": socket.gethostname(),
          "started": time.time()}
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({**mine, "renewed": time.time()}))
  time.sleep(LEASE_SETTLE_S)
  back = _read_lease(path)
  if not back or back.get("token") != token:
    refuse(back or {}, time.time())
  stop = threading.Event()

  def renew():
    while not stop.wait(LEASE_RENEW_S):
      try:
        now = _read_lease(path)
        if now is not None and now.get("token") != token:
          # Renewing would overwrite the other run's lease; it took this one for dead.
          logging.error("clowlab: the lease %s was taken over by another run (%s): the two "
                        "now write the same workdir. Stop one of them.", path, now)
          return
        path.write_text(json.dumps({**mine, "renewed": time.time()}))
      except Exception as e:  # noqa: BLE001 - a missed renewal only shortens the lease
        logging.warning("clowlab: could not renew the lease %s (%s); retrying in %.0f s.",
                        path, _short(e), LEASE_RENEW_S)

  thread = threading.Thread(target=renew, name="clowlab-lease", daemon=True)
  thread.start()
  try:
    yield
  finally:
    stop.set()
    thread.join(timeout=30)  # a renewal stuck on the network must not hold up the exit
    try:
      now = _read_lease(path)
      if now is not None and now.get("token") == token:
        path.unlink()
    except Exception as e:  # noqa: BLE001 - the lease then expires on its own
      logging.warning("clowlab: could not release the lease %s (%s); it expires in %.0f s.",
                      path, _short(e), LEASE_TTL_S)


def checkpoint_dir(workdir: str | os.PathLike):
  """<workdir>/checkpoints: a pathlib.Path (absolute) for a local workdir, an epath.Path for a
  remote one."""
  if paths.is_remote(workdir):
    return paths.path(paths.normalize(workdir)) / CHECKPOINT_SUBDIR
  return pathlib.Path(workdir).absolute() / CHECKPOINT_SUBDIR


def is_workdir(path: str | os.PathLike) -> bool:
  """A clowlab workdir (it has checkpoints/), as opposed to an HF model directory."""
  return checkpoint_dir(path).is_dir()


def local_tokenizer_dir(workdir: str, name: str = TOKENIZER_SUBDIR,
                        process_index: int = 0) -> str:
  """<workdir>/<name> as a local directory the tokenizer loaders can read: itself for a local
  workdir, a fresh copy in the workdir's local directory (one per process) for a remote one."""
  if not paths.is_remote(workdir):
    return os.path.join(workdir, name)
  return paths.download_tree(
      paths.path(workdir) / name,
      os.path.join(paths.local_dir(workdir), f"{name}.process{process_index}"))


def _short(e: BaseException) -> str:
  text = " ".join(str(e).split())
  return f"{type(e).__name__}: {text if len(text) <= 200 else text[:200] + ' ...'}"
