"""Run metrics: a JSONL file and TensorBoard event files in the workdir, plus a console line.

Only process 0 writes. `metrics.jsonl` has one object per logged step:
{"step": 10, "split": "train", "loss": ..., "lr": ..., "tokens_per_s": ..., ...}.
"""
from __future__ import annotations

import json
import math
import os
import time

import jax


class Writer:

  def __init__(self, workdir: str, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      try:
        from tensorboardX import SummaryWriter  # noqa: PLC0415 - optional at import time
        self._tb = SummaryWriter(os.path.join(workdir, "tb"))
      except ImportError:
        self._tb = None

  def write(self, step: int, values: dict[str, float], split: str = "train") -> None:
    if not self.enabled:
      return
    clean = {k: (float(v) if v is not None else None) for k, v in values.items()}
    record = {"step": int(step), "split": split, "time": time.time(), **{
        k: (v if v is None or math.isfinite(v) else str(v)) for k, v in clean.items()}}
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for k, v in clean.items():
        if v is not None:
          self._tb.add_scalar(f"{split}/{k}", v, step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.flush()
      self._tb.close()


def read(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


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
