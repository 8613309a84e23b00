"""`python -m clowlab.main` with one injected fault, for the reliability tests (tests/test_faults.py).

    python tests/fault_worker.py FAULT -- --config=... --workdir=... [--config.x=y ...]

FAULT (the fault fires in this process, at a moment chosen by the caller):
  none                      no fault
  kill_after_step:N:MS      SIGKILL MS ms after the N-th batch of this process is built
                            (lands inside a step, an evaluation or a checkpoint save)
  kill_in_save:K:MS         SIGKILL MS ms after the K-th checkpoint save started (while orbax
                            writes it in the background, or while it renames it into place)
  kill_in_data_state:K      SIGKILL while the data iterator's state is read for the K-th save
  fsize_at_save:K:BYTES[:L] from the K-th save on (until the L-th), no file may grow past BYTES
                            (RLIMIT_FSIZE, enforced by the kernel like a full disk): real write
                            errors inside orbax's writers
"""
import os
import resource
import signal
import sys
import threading


def _kill(delay_ms: float = 0.0) -> None:
  def fire():
    os.kill(os.getpid(), signal.SIGKILL)
  if delay_ms <= 0:
    fire()
  t = threading.Timer(delay_ms / 1e3, fire)
  t.daemon = True
  t.start()


def install(fault: str) -> None:
  kind, *args = fault.split(":")
  if kind == "none":
    return
  from clowlab import checkpoint, sharding  # noqa: PLC0415
  from clowlab.data import pipeline  # noqa: PLC0415
  counts = {"batch": 0, "save": 0, "state": 0}
  if kind == "kill_after_step":
    n, ms = int(args[0]), float(args[1])
    orig_batch = sharding.global_batch

    def global_batch(*a, **kw):
      counts["batch"] += 1
      if counts["batch"] == n:
        _kill(ms)
      return orig_batch(*a, **kw)
    sharding.global_batch = global_batch
  elif kind in ("kill_in_save", "fsize_at_save"):
    k = int(args[0])
    orig_save = checkpoint.Manager.save

    def save(self, *a, **kw):
      counts["save"] += 1
      if counts["save"] == k and kind == "fsize_at_save":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a dead process
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(args[1]), hard))
      if len(args) > 2 and counts["save"] == int(args[2]) and kind == "fsize_at_save":
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space is back
      out = orig_save(self, *a, **kw)
      if counts["save"] == k and kind == "kill_in_save":
        _kill(float(args[1]))
      return out
    checkpoint.Manager.save = save
  elif kind == "kill_in_data_state":
    k = int(args[0])
    orig_state = pipeline.Loader.get_state

    def get_state(self):
      counts["state"] += 1
      state = orig_state(self)
      if counts["state"] == k:
        _kill(0)
      return state
    pipeline.Loader.get_state = get_state
  else:
    raise SystemExit(f"fault_worker: unknown fault {fault!r}")


if __name__ == "__main__":
  fault, sep, *main_args = sys.argv[1:]
  assert sep == "--", sys.argv
  install(fault)
  sys.argv = [sys.argv[0]] + main_args
  from clowlab import main  # noqa: PLC0415
  main.run()
