"""Runs -> plots and a comparison table, from each workdir's metrics.jsonl.

    python -m clowlab.report WORKDIR [WORKDIR ...] [--out DIR] [--names a,b] [--metrics m1,m2]

Writes DIR/loss.png, lr.png, throughput.png, eval.png (one panel per evaluation metric) and
DIR/report.md (one row per run: last step, final train loss, median tokens/s and ms/step, the
last and best value of every evaluation metric), and prints the table. Reads only the JSONL
(no jax, no checkpoint), so it runs on a laptop beside a pod's workdirs copied back.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import statistics
import sys
from typing import Any

from clowlab.errors import ClowlabError
from clowlab.workdir import METRICS_FILE

# Evaluation metrics where lower is better (for the "best" column); all others: higher.
LOWER_IS_BETTER = ("loss", "perplexity", "bits_per_dim", "nll")


def _number(v: Any) -> float | None:
  """metrics.jsonl writes non-finite values as strings ("nan", "inf")."""
  if isinstance(v, bool) or v is None:
    return None
  try:
    return float(v)
  except (TypeError, ValueError):
    return None


def read_run(workdir: str | os.PathLike) -> dict[str, dict[str, list[tuple[int, float]]]]:
  """{"train": {metric: [(step, value)]}, "eval": {...}}; a re-run step keeps its last row."""
  path = pathlib.Path(workdir) / METRICS_FILE
  if not path.is_file():
    raise ClowlabError(f"clowlab: {path} does not exist. Pass workdirs of clowlab runs (the "
                       "--workdir of python -m clowlab.main).")
  rows: dict[tuple[str, int], dict] = {}
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        r = json.loads(line)
        key = (str(r.get("split", "train")), int(r["step"]))
      except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ClowlabError(f"clowlab: {path} line {n} is not a metrics row (JSON with a "
                           "'step'). Remove the line (e.g. one cut short by a kill).") from None
      rows.setdefault(key, {}).update(r)  # resumed runs re-log steps: the later row wins
  out: dict[str, dict[str, list[tuple[int, float]]]] = {"train": {}, "eval": {}}
  for (split, step), r in sorted(rows.items(), key=lambda kv: kv[0][1]):
    for k, v in r.items():
      x = _number(v)
      if k in ("step", "split", "time") or x is None:
        continue
      out.setdefault(split, {}).setdefault(k, []).append((step, x))
  if not any(out.values()):
    raise ClowlabError(f"clowlab: {path} holds no metrics yet.")
  return out


def summary(run: dict, metrics: list[str] | None = None) -> dict[str, Any]:
  """The table row of one run; `metrics`: only evaluation metrics containing one of these."""
  tr, ev = run.get("train", {}), run.get("eval", {})
  steps = [s for series in list(tr.values()) + list(ev.values()) for s, _ in series]
  losses = [v for _, v in tr.get("loss", []) if math.isfinite(v)]
  row: dict[str, Any] = {
      "last step": max(steps) if steps else None,
      "train loss (last 5 logged)": statistics.fmean(losses[-5:]) if losses else None,
      "tokens/s (median)": _median(tr.get("tokens_per_s")),
      "ms/step (median)": _median(tr.get("ms_per_step")),
  }
  for k, series in sorted(ev.items()):
    if metrics and not any(m in k for m in metrics):
      continue
    vals = [v for _, v in series if math.isfinite(v)]
    if not vals:
      continue
    lower = any(t in k for t in LOWER_IS_BETTER)
    row[f"eval {k} (last)"] = vals[-1]
    row[f"eval {k} (best)"] = min(vals) if lower else max(vals)
  return row


def _median(series):
  vals = [v for _, v in series or [] if math.isfinite(v)]
  return statistics.median(vals) if vals else None


def table(names: list[str], rows: list[dict[str, Any]]) -> str:
  cols = []
  for r in rows:
    cols += [c for c in r if c not in cols]
  fmt = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
  lines = ["| run | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
  lines += ["| " + n + " | " + " | ".join(fmt(r.get(c)) for c in cols) + " |"
            for n, r in zip(names, rows)]
  return "\n".join(lines) + "\n"


def plot(names: list[str], runs: list[dict], out_dir: pathlib.Path,
         metrics: list[str] | None = None) -> list[pathlib.Path]:
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  written = []

  def one(fname, title, keys, split="train", logy=False):
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for name, run in zip(names, runs):
      for k in keys:
        series = run.get(split, {}).get(k)
        if series:
          s, v = zip(*series)
          ax.plot(s, v, label=f"{name}" if len(keys) == 1 else f"{name} {k}")
          drawn = True
    if not drawn:
      plt.close(fig)
      return
    ax.set(title=title, xlabel="step")
    if logy:
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / fname, dpi=110)
    plt.close(fig)
    written.append(out_dir / fname)

  one("loss.png", "training loss", ["loss"])
  one("lr.png", "learning rate", ["lr"])
  one("throughput.png", "tokens/s", ["tokens_per_s"])
  metrics = sorted({k for r in runs for k in r.get("eval", {})
                    if not metrics or any(m in k for m in metrics)})
  if metrics:
    n = len(metrics)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.3 * rows), squeeze=False)
    for ax, k in zip(axes.flat, metrics):
      for name, run in zip(names, runs):
        series = run.get("eval", {}).get(k)
        if series:
          s, v = zip(*series)
          ax.plot(s, v, marker="o", ms=3, label=name)
      ax.set(title=k, xlabel="step")
      ax.grid(alpha=0.3)
      ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
      ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_dir / "eval.png", dpi=110)
    plt.close(fig)
    written.append(out_dir / "eval.png")
  return written


def report(workdirs: list[str], out_dir: str, names: list[str] | None = None,
           metrics: list[str] | None = None) -> str:
  """Writes the plots and report.md into out_dir; returns the markdown table."""
  if not workdirs:
    raise ClowlabError("clowlab: report needs at least one workdir.")
  names = names or [pathlib.Path(w).name or str(w) for w in workdirs]
  if len(names) != len(workdirs):
    raise ClowlabError(f"clowlab: --names has {len(names)} names for {len(workdirs)} workdirs.")
  runs = [read_run(w) for w in workdirs]
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  md = table(names, [summary(r, metrics) for r in runs])
  pngs = plot(names, runs, out, metrics)
  (out / "report.md").write_text(
      "Runs: " + ", ".join(f"{n} = `{w}`" for n, w in zip(names, workdirs)) + "\n\n" + md
      + "\n" + "".join(f"![{p.stem}]({p.name})\n" for p in pngs))
  return md


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(prog="python -m clowlab.report", description=__doc__.split("\n")[0])
  p.add_argument("workdirs", nargs="+")
  p.add_argument("--out", default="report", help="output directory (default ./report)")
  p.add_argument("--names", default="", help="comma-separated run names (default: dir names)")
  p.add_argument("--metrics", default="", help="comma-separated substrings: only these "
                 "evaluation metrics in the table (default: all)")
  a = p.parse_args(argv)
  try:
    md = report(a.workdirs, a.out, [n for n in a.names.split(",") if n] or None,
                [m for m in a.metrics.split(",") if m] or None)
  except ClowlabError as e:
    print(e, file=sys.stderr)
    sys.exit(2)
  print(md, end="")
  print(f"clowlab: plots and report.md in {a.out}")


if __name__ == "__main__":
  main()
