"""Run metrics: a JSONL file and TensorBoard event files in the workdir, plus a console line.

Only process 0 writes. `metrics.jsonl` has one object per logged step:
{"step": 10, "split": "train", "loss": ..., "lr": ..., "tokens_per_s": ..., ...}.

A remote workdir (gs://...): object storage has no append, so both files are written in the
workdir's local directory (`paths.local_dir`) and uploaded whole: at most every SYNC_EVERY_S
seconds when a row is written, at `flush()` (the trainer calls it after each checkpoint) and at
`close()`. metrics.jsonl is downloaded first, so a resumed run appends to its history; on the
remote it lags the local copy by at most SYNC_EVERY_S seconds or one checkpoint. TensorBoard
events go to a fresh local directory per run and are uploaded to <workdir>/tb/ the same way
(tensorboardX's own gs:// writer needs google-cloud-storage and re-uploads from memory).
A failed upload is a warning naming the local copy, never a training failure.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time

import jax

from clowlab import paths

SYNC_EVERY_S = 60.0


class Writer:

  def __init__(self, workdir: str, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.remote = paths.is_remote(workdir)
    self._workdir = workdir
    self._local = self.path  # where rows are appended
    self._tb_dir = os.path.join(workdir, "tb")  # where tensorboardX writes
    self._tb = None
    self._last_sync = time.monotonic()
    if not self.enabled:
      return
    if self.remote:
      local = paths.local_dir(workdir)
      self._local = os.path.join(local, "metrics.jsonl")
      remote = paths.path(self.path)
      data = remote.read_bytes() if remote.exists() else b""
      with open(self._local, "wb") as f:  # the remote file is the history, not an older copy
        f.write(data)
      self._tb_dir = tempfile.mkdtemp(prefix="tb.", dir=local)
    else:
      os.makedirs(workdir, exist_ok=True)
    try:
      from tensorboardX import SummaryWriter  # noqa: PLC0415 - optional at import time
      # tensorboardX names the file events.out.tfevents.<seconds>.<host>: a second writer on the
      # same workdir within a second (a quick resume) would replace the first's file on upload.
      self._tb = SummaryWriter(self._tb_dir, filename_suffix=f".{os.getpid()}.{time.time_ns()}")
    except ImportError:
      self._tb = None

  def write(self, step: int, values: dict[str, float], split: str = "train") -> None:
    if not self.enabled:
      return
    clean = {k: (float(v) if v is not None else None) for k, v in values.items()}
    record = {"step": int(step), "split": split, "time": time.time(), **{
        k: (v if v is None or math.isfinite(v) else str(v)) for k, v in clean.items()}}
    with open(self._local, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for k, v in clean.items():
        if v is not None:
          self._tb.add_scalar(f"{split}/{k}", v, step)
    if self.remote and time.monotonic() - self._last_sync > SYNC_EVERY_S:
      self.flush()

  def flush(self) -> bool:
    """Uploads the files of a remote workdir (a no-op for a local one); False if it failed."""
    if not (self.enabled and self.remote):
      return True
    self._last_sync = time.monotonic()
    try:
      if self._tb is not None:
        self._tb.flush()
      with open(self._local, "rb") as f:
        paths.path(self.path).write_bytes(f.read())
      paths.upload_tree(self._tb_dir, os.path.join(self._workdir, "tb"))
      return True
    except Exception as e:  # noqa: BLE001 - metrics are not worth stopping a run for
      logging.warning("clowlab: could not upload the metrics to %s (%s: %s); they are in %s "
                      "and %s, and the next upload retries.", self._workdir, type(e).__name__,
                      " ".join(str(e).split())[:200], self._local, self._tb_dir)
      return False

  def close(self) -> None:
    if self._tb is not None:
      self._tb.flush()
      self._tb.close()
      self._tb = None
    if self.enabled and self.remote and self.flush():
      shutil.rmtree(self._tb_dir, ignore_errors=True)  # uploaded; metrics.jsonl stays local


def read(workdir: str) -> list[dict]:
  path = paths.path(os.path.join(workdir, "metrics.jsonl"))
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
          if line.strip()]


def encoder_flops_per_token(ecfg, seq_len: int) -> float:
  """Training FLOPs per token of one encoder pass (forward + backward = 3x forward).

  Forward per token: 2 x (matmul params outside the embedding tables) + attention scores and
  values, 2 x 2 x L x D per layer. The vocabulary projection of an MLM head is not included
  (methods compute it at a fraction of positions).
  """
  D, F, N = ecfg.hidden_size, ecfg.intermediate_size, ecfg.num_layers
  matmul_params = N * (4 * D * D + 2 * D * F)
  forward = 2 * matmul_params + N * 4 * seq_len * D
  return 3.0 * forward


# Peak dense bf16 FLOP/s per device, for the MFU estimate; CPU uses the measured XLA:CPU GEMM
# rate of this project's 2-core machines (../shared/PERF_NOTES.md), which is only indicative.
PEAK_FLOPS = {"tpu v4": 275e12, "tpu v5 lite": 197e12, "tpu v5e": 197e12, "tpu v5p": 459e12,
              "tpu v6 lite": 918e12, "nvidia h100": 989e12, "nvidia h200": 989e12,
              "nvidia a100": 312e12, "cpu": 160e9}


def peak_flops_per_device(device=None) -> float:
  kind = (device or jax.devices()[0]).device_kind.lower()
  for name, flops in PEAK_FLOPS.items():
    if kind.startswith(name):
      return flops
  return PEAK_FLOPS["cpu"] if jax.default_backend() == "cpu" else float("nan")
