"""Preemption and multi-host agreement for the training loop: SIGTERM finishes the current step,
saves and exits 0 (a deadline, preemption_grace_s, after which the process exits 143 without
the save), and every process of a multi-host run decides to stop at the same step.
"""
from __future__ import annotations

import os
import signal
import sys

import jax
import numpy as np

EXIT_GRACE_EXPIRED = 143  # 128 + SIGTERM: what a shell reports for a process SIGTERM ended


class Preemption:
  """SIGTERM -> finish the current step, save, exit cleanly (exit code 0).

  A watchdog started by the signal ends the process with EXIT_GRACE_EXPIRED if the final save
  is not on disk within `grace_s` (a preemption notice is a deadline: a hard kill follows). The
  checkpoint being written is then only a temporary directory; the previous one stays latest.
  """

  def __init__(self, grace_s: float, last_good):
    self.requested = False
    self.grace_s, self._last_good = grace_s, last_good
    self._old, self._timer = None, None

  def __enter__(self):
    try:
      self._old = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread
      self._old = None
    return self

  def _handle(self, *_):
    if self.requested:
      return
    self.requested = True
    if self.grace_s > 0:
      import threading  # noqa: PLC0415
      self._timer = threading.Timer(self.grace_s, self._expire)
      self._timer.daemon = True
      self._timer.start()

  def _expire(self):
    print(f"clowlab: SIGTERM: the final checkpoint was not written within preemption_grace_s="
          f"{self.grace_s:g}; exiting without it. Resume restarts from the last complete "
          f"checkpoint ({self._last_good()}).", file=sys.stderr, flush=True)
    os._exit(EXIT_GRACE_EXPIRED)  # noqa: SLF001 - a deadline: no cleanup may block it

  def saved(self):
    """The final save is on disk: the deadline no longer applies."""
    if self._timer is not None:
      self._timer.cancel()

  def agreed(self) -> bool:
    """Whether any process was signalled: all processes must save the same step together."""
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils  # noqa: PLC0415
    return bool(np.any(multihost_utils.process_allgather(np.array(self.requested))))

  def __exit__(self, *exc):
    self.saved()
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)


def agree(flag: bool) -> bool:
  """Process 0's value of a host-local flag, on every process."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # noqa: PLC0415
  return bool(multihost_utils.broadcast_one_to_all(np.array(flag)))
