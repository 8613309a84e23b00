"""Run metrics: a JSONL file and TensorBoard event files in the workdir, plus a console line.

Only process 0 writes. `metrics.jsonl` has one object per logged step:
{"step": 10, "split": "train", "loss": ..., "lr": ..., "tokens_per_s": ..., ...}.

A remote workdir (gs://...): object storage has no append, so both files are written in the
workdir's local directory (`paths.local_dir`) and uploaded whole: at most every SYNC_EVERY_S
seconds when a row is written, at `flush()` (the trainer calls it after each checkpoint) and at
`close()`. metrics.jsonl is downloaded first, so a resumed run appends to its history; on the
remote it lags the local copy by at most SYNC_EVERY_S seconds or one checkpoint. TensorBoard
events go to a fresh local directory per run and are uploaded to <workdir>/tb/ the same way.
A failed upload is a warning naming the local copy, never a training failure.

The TensorBoard files are written by `EventFile` (scalars only) rather than tensorboardX, whose
import pulls in torch when it is installed: 2-3 s on every start for one kind of record.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import struct
import tempfile
import time

import jax

from clowlab import paths
from clowlab import workdir as workdir_lib

SYNC_EVERY_S = 60.0


class Writer:

  def __init__(self, workdir: str, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.path = os.path.join(workdir, workdir_lib.METRICS_FILE)
    self.remote = paths.is_remote(workdir)
    self._workdir = workdir
    self._local = self.path  # where rows are appended
    self._tb_dir = os.path.join(workdir, "tb")  # where the event file goes
    self._tb = None
    self._last_sync = time.monotonic()
    if not self.enabled:
      return
    if self.remote:
      local = paths.local_dir(workdir)
      self._local = os.path.join(local, workdir_lib.METRICS_FILE)
      remote = paths.path(self.path)
      data = remote.read_bytes() if remote.exists() else b""
      with open(self._local, "wb") as f:  # the remote file is the history, not an older copy
        f.write(data)
      self._tb_dir = tempfile.mkdtemp(prefix="tb.", dir=local)
    else:
      os.makedirs(workdir, exist_ok=True)
    self._tb = EventFile(self._tb_dir)

  def write(self, step: int, values: dict[str, float], split: str = "train") -> None:
    if not self.enabled:
      return
    clean = {k: (float(v) if v is not None else None) for k, v in values.items()}
    record = {"step": int(step), "split": split, "time": time.time(), **{
        k: (v if v is None or math.isfinite(v) else str(v)) for k, v in clean.items()}}
    with open(self._local, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      self._tb.add_scalars({f"{split}/{k}": v for k, v in clean.items() if v is not None}, step)
    if self.remote and time.monotonic() - self._last_sync > SYNC_EVERY_S:
      self.flush()

  def flush(self) -> bool:
    """Uploads the files of a remote workdir (a no-op for a local one); False if it failed."""
    if not (self.enabled and self.remote):
      return True
    self._last_sync = time.monotonic()
    try:
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
      self._tb.close()
      self._tb = None
    if self.enabled and self.remote and self.flush():
      shutil.rmtree(self._tb_dir, ignore_errors=True)  # uploaded; metrics.jsonl stays local


class EventFile:
  """A TensorBoard event file of scalar summaries (the TFRecord framing of `Event` protos).

  Named events.out.tfevents.<seconds>.<host>.<pid>.<ns>: a second writer on the same workdir
  within a second (a quick resume) must not replace the first's file on upload. Each record is
  flushed when written (a few per logged step), so a killed run loses nothing it logged.
  """

  def __init__(self, log_dir: str):
    os.makedirs(log_dir, exist_ok=True)
    now = time.time()
    self.path = os.path.join(log_dir, f"events.out.tfevents.{int(now)}.{socket.gethostname()}"
                                      f".{os.getpid()}.{time.time_ns()}")
    self._f = open(self.path, "ab")  # noqa: SIM115 - closed in close()
    self._write(_event(now, file_version="brain.Event:2"))

  def add_scalars(self, values: dict[str, float], step: int) -> None:
    now = time.time()
    for tag, v in values.items():
      self._write(_event(now, step=step, tag=tag, value=v))

  def _write(self, event: bytes) -> None:
    header = struct.pack("<Q", len(event))
    self._f.write(header + struct.pack("<I", _masked_crc(header)) + event
                  + struct.pack("<I", _masked_crc(event)))
    self._f.flush()

  def close(self) -> None:
    self._f.close()


def read_events(path: str) -> list[dict]:
  """Reads an event file back (wall_time, step, file_version or tag + value per record),
  checking every length and CRC; ValueError names the first damaged record."""
  with open(path, "rb") as f:
    data = f.read()
  out, pos = [], 0
  while pos < len(data):
    if len(data) < pos + 12:
      raise ValueError(f"{path}: truncated record header at byte {pos}")
    header = data[pos:pos + 8]
    (n,), (crc,) = struct.unpack("<Q", header), struct.unpack("<I", data[pos + 8:pos + 12])
    if crc != _masked_crc(header) or len(data) < pos + 16 + n:
      raise ValueError(f"{path}: damaged or truncated record at byte {pos}")
    body = data[pos + 12:pos + 12 + n]
    if struct.unpack("<I", data[pos + 12 + n:pos + 16 + n])[0] != _masked_crc(body):
      raise ValueError(f"{path}: record at byte {pos} fails its CRC")
    out.append(_parse_event(body))
    pos += 16 + n
  return out


# ---- protobuf wire format of tensorflow.Event / Summary (only the fields written here) ----------
# Event: 1 wall_time (double), 2 step (int64), 3 file_version (string), 5 summary (Summary).
# Summary: 1 value (Summary.Value, repeated). Summary.Value: 1 tag (string), 2 simple_value (float).

def _varint(n: int) -> bytes:
  n &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negative values
  out = bytearray()
  while True:
    b, n = n & 0x7F, n >> 7
    out.append(b | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time: float, *, step: int = 0, file_version: str | None = None,
           tag: str | None = None, value: float = 0.0) -> bytes:
  out = b"\x09" + struct.pack("<d", wall_time)
  if step:
    out += b"\x10" + _varint(step)
  if file_version is not None:
    out += _field_bytes(3, file_version.encode())
  if tag is not None:
    summary_value = _field_bytes(1, tag.encode()) + b"\x15" + struct.pack("<f", value)
    out += _field_bytes(5, _field_bytes(1, summary_value))
  return out


def _read_varint(b: bytes, i: int) -> tuple[int, int]:
  n = shift = 0
  while True:
    n |= (b[i] & 0x7F) << shift
    shift += 7
    i += 1
    if not b[i - 1] & 0x80:
      return n, i


def _fields(b: bytes):
  i = 0
  while i < len(b):
    key, i = _read_varint(b, i)
    number, wire = key >> 3, key & 7
    if wire == 0:
      v, i = _read_varint(b, i)
    elif wire == 1:
      v, i = b[i:i + 8], i + 8
    elif wire == 5:
      v, i = b[i:i + 4], i + 4
    elif wire == 2:
      n, i = _read_varint(b, i)
      v, i = b[i:i + n], i + n
    else:
      raise ValueError(f"unsupported protobuf wire type {wire}")
    yield number, v


def _parse_event(b: bytes) -> dict:
  ev = {"step": 0}
  for number, v in _fields(b):
    if number == 1:
      ev["wall_time"] = struct.unpack("<d", v)[0]
    elif number == 2:
      ev["step"] = v - (1 << 64) if v >= 1 << 63 else v
    elif number == 3:
      ev["file_version"] = v.decode()
    elif number == 5:
      for _, value in _fields(v):  # Summary.value
        for vn, vv in _fields(value):
          if vn == 1:
            ev["tag"] = vv.decode()
          elif vn == 2:
            ev["value"] = struct.unpack("<f", vv)[0]
  return ev


def _crc32c_table() -> list[int]:
  table = []
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli polynomial, reflected
    table.append(c)
  return table


_CRC32C_TABLE = _crc32c_table()


def _crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
  """TFRecord's masked CRC-32C."""
  crc = _crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read(workdir: str) -> list[dict]:
  path = paths.path(os.path.join(workdir, workdir_lib.METRICS_FILE))
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
