"""metrics.Writer: metrics.jsonl rows and the TensorBoard event file clowlab writes itself.

The event file is checked with TensorBoard's own reader (the `tensorboard` package, a test
dependency), so a framing, CRC or protobuf mistake fails here rather than in a user's browser.
"""
import math
import os
import sys

import pytest

from clowlab import metrics


def _tensorboard_scalars(log_dir):
  from tensorboard.backend.event_processing import event_accumulator  # noqa: PLC0415
  acc = event_accumulator.EventAccumulator(log_dir, size_guidance={"scalars": 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_reads_the_scalars_written(tmp_path):
  w = metrics.Writer(str(tmp_path), enabled=True)
  for step in (1, 2, 300, 2**40):
    w.write(step, {"loss": 1.0 / step, "lr": 1e-3 * step, "skipped": None})
  w.write(2, {"accuracy": 0.25}, split="eval")
  w.write(3, {"loss": float("nan")})
  w.close()
  got = _tensorboard_scalars(str(tmp_path / "tb"))
  assert sorted(got) == ["eval/accuracy", "train/loss", "train/lr"]
  assert [s for s, _ in got["train/loss"]] == [1, 2, 300, 2**40, 3]
  for (step, v), want in zip(got["train/lr"], (1e-3, 2e-3, 0.3, 1e-3 * 2**40)):
    assert v == pytest.approx(want, rel=1e-6), step  # float32 on disk
  assert math.isnan(got["train/loss"][-1][1])
  assert got["eval/accuracy"] == [(2, 0.25)]


def test_read_events_round_trips_and_names_a_damaged_record(tmp_path):
  f = metrics.EventFile(str(tmp_path))
  f.add_scalars({"train/loss": 2.5, "train/ü": -1.0}, step=7)
  f.close()
  events = metrics.read_events(f.path)
  assert events[0]["file_version"] == "brain.Event:2"
  assert [(e["step"], e["tag"], e["value"]) for e in events[1:]] == [
      (7, "train/loss", 2.5), (7, "train/ü", -1.0)]
  data = bytearray(open(f.path, "rb").read())
  data[-6] ^= 0x01  # a bit inside the last record's payload
  open(f.path, "wb").write(bytes(data))
  with pytest.raises(ValueError, match="fails its CRC"):
    metrics.read_events(f.path)
  open(f.path, "wb").write(bytes(data[:-3]))
  with pytest.raises(ValueError, match="truncated"):
    metrics.read_events(f.path)


def test_crc32c_known_answers():
  assert metrics._crc32c(b"123456789") == 0xE3069283  # noqa: SLF001 - the standard check value
  assert metrics._crc32c(bytes(32)) == 0x8A9136AA  # noqa: SLF001 - RFC 3720 B.4


def test_two_writers_on_one_workdir_get_two_files(tmp_path):
  for _ in range(2):  # a quick resume: same second, same host
    w = metrics.Writer(str(tmp_path), enabled=True)
    w.write(1, {"loss": 1.0})
    w.close()
  files = sorted(os.listdir(tmp_path / "tb"))
  assert len(files) == 2 and all(f.startswith("events.out.tfevents.") for f in files)
  assert [r["step"] for r in metrics.read(str(tmp_path))] == [1, 1]


def test_a_run_start_imports_neither_torch_nor_tensorboardx(tmp_path):
  """The metrics writer and a workdir's tokenizer load keep a start free of torch's 3 s import
  (torch is installed here for the parity tests)."""
  import subprocess  # noqa: PLC0415

  from tiny import tiny_cfg  # noqa: PLC0415
  from clowlab import train  # noqa: PLC0415
  train.resolve_tokenizer(tiny_cfg(), str(tmp_path))  # as a run's first start builds it
  code = ("import sys; from clowlab import metrics, train; "
          "from clowlab.data import tokenizers; "
          "tok = tokenizers.load_tokenizer(sys.argv[1] + '/tokenizer'); "
          "assert tok.encode(['a b'], max_len=8)['input_ids'][0][0] == tok.cls_id; "
          "w = metrics.Writer(sys.argv[1], enabled=True); w.write(1, {'loss': 1.0}); w.close(); "
          "print(sorted(m for m in ('torch', 'tensorboardX', 'transformers') "
          "if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                       text=True, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.stdout.strip() == "[]", out.stdout + out.stderr
