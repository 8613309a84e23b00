"""python -m clowlab.report: metrics.jsonl of runs -> plots and a comparison table."""
import json
import subprocess
import sys

import pytest

from clowlab import report
from clowlab.errors import ClowlabError
from tiny import REPO


def _run(d, losses, evals, kill_rerun=False):
  d.mkdir()
  with open(d / "metrics.jsonl", "w") as f:
    for s, l in enumerate(losses, 1):
      f.write(json.dumps({"step": s, "split": "train", "loss": l, "lr": 1e-3 * s,
                          "tokens_per_s": 100.0 * s, "ms_per_step": 10.0}) + "\n")
    if kill_rerun:  # a resumed run logs step 2 again: the later row wins
      f.write(json.dumps({"step": 2, "split": "train", "loss": 0.5}) + "\n")
    for s, v in evals:
      f.write(json.dumps({"step": s, "split": "eval", "stsb_spearman": v, "mlm_loss": 10 - v})
              + "\n")
  return str(d)


def test_table_and_plots(tmp_path):
  a = _run(tmp_path / "a", [4.0, 3.0, "nan", 2.0], [(2, 5.0), (4, 7.0)], kill_rerun=True)
  b = _run(tmp_path / "b", [5.0, 4.0], [(2, 6.0)])
  md = report.report([a, b], str(tmp_path / "out"))
  run_a = report.read_run(a)
  steps, losses = zip(*run_a["train"]["loss"])
  assert steps == (1, 2, 3, 4) and losses[:2] == (4.0, 0.5) and losses[3] == 2.0  # 3 is "nan"
  row = report.summary(run_a)
  assert row["last step"] == 4
  assert row["train loss (last 5 logged)"] == pytest.approx((4.0 + 0.5 + 2.0) / 3)
  assert row["eval stsb_spearman (best)"] == 7.0 and row["eval mlm_loss (best)"] == 3.0
  assert row["tokens/s (median)"] == 250.0
  assert md.splitlines()[0].startswith("| run | last step |") and "| a | 4 |" in md
  for png in ("loss.png", "lr.png", "throughput.png", "eval.png"):
    assert (tmp_path / "out" / png).stat().st_size > 5000, png
  assert "![eval](eval.png)" in (tmp_path / "out" / "report.md").read_text()
  only = report.report([a, b], str(tmp_path / "out2"), metrics=["spearman"])
  assert "stsb_spearman" in only and "mlm_loss" not in only


def test_bad_workdirs_are_named(tmp_path):
  with pytest.raises(ClowlabError, match="metrics.jsonl does not exist"):
    report.report([str(tmp_path / "nope")], str(tmp_path / "out"))
  d = tmp_path / "cut"
  d.mkdir()
  (d / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
  with pytest.raises(ClowlabError, match="line 2 is not a metrics row"):
    report.read_run(str(d))


def test_cli(tmp_path):
  a = _run(tmp_path / "a", [4.0, 3.0], [(2, 5.0)])
  r = subprocess.run([sys.executable, "-m", "clowlab.report", a, "--out", str(tmp_path / "o"),
                      "--names", "mine"], cwd=str(REPO), capture_output=True, text=True,
                     timeout=120)
  assert r.returncode == 0, r.stderr
  assert "| mine | 2 |" in r.stdout and (tmp_path / "o" / "loss.png").exists()
  r = subprocess.run([sys.executable, "-m", "clowlab.report", str(tmp_path / "none")],
                     cwd=str(REPO), capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
