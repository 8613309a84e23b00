"""Markdown tables of the issue-9 runs (docs/evidence/evidence9.sh): python docs/evidence/table9.py RUNS

Per run: the final evaluation in RUNS/<run>/metrics.jsonl and the LCQMC finetuning JSON
RUNS/<run>.lcqmc.json; per method: mean and sample standard deviation over seeds.
"""
import json
import pathlib
import statistics
import sys

METHODS = {"small_mlm": "char-MLM only", "small": "CLOWER (MLM + word-char contrast)",
           "small_w03": "CLOWER, word_weight 0.3",
           "small_v1": "first design, dropped (span vs span, same sentence)"}
COLUMNS = [("stsb_zh_test/spearman", "STS-B zh test"), ("cnsd_test/spearman", "CNSD STS-B test"),
           ("lcqmc_test/spearman", "LCQMC test (Spearman)"), ("lcqmc_ft/accuracy", "LCQMC finetuned acc."),
           ("mlm_accuracy", "held-out MLM acc. %"), ("perplexity", "held-out MLM ppl")]


def run_results(d: pathlib.Path, run: str) -> dict:
  out = {}
  metrics = d / run / "metrics.jsonl"
  if metrics.is_file():
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    evals = [r for r in rows if r.get("split") == "eval"]
    if evals:
      out.update(evals[-1])
      out["mlm_accuracy"] = 100 * out["mlm_accuracy"]
    train = [r for r in rows if r.get("split") == "train" and "ms_per_step" in r]
    if train:
      out["ms_per_step"] = statistics.median(r["ms_per_step"] for r in train[1:] or train)
      out["wcl_accuracy"] = train[-1].get("wcl_accuracy")
  ft = d / f"{run}.lcqmc.json"
  if ft.is_file() and ft.stat().st_size:
    out["lcqmc_ft/accuracy"] = json.loads(ft.read_text())["accuracy"]
  return out


def fmt(values: list[float]) -> str:
  if not values:
    return "-"
  if len(values) == 1:
    return f"{values[0]:.2f}"
  return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main(d: str) -> None:
  d = pathlib.Path(d)
  print("| method | seeds | " + " | ".join(name for _, name in COLUMNS) + " | ms/step |")
  print("|---|---:|" + "---:|" * (len(COLUMNS) + 1))
  per_seed = []
  for method, name in METHODS.items():
    runs = sorted(p.name for p in d.glob(f"{method}_s[0-9]") if p.is_dir())
    res = {r: run_results(d, r) for r in runs}
    res = {r: v for r, v in res.items() if "perplexity" in v}  # finished runs only
    cells = [fmt([v[k] for v in res.values() if v.get(k) is not None]) for k, _ in COLUMNS]
    ms = fmt([v["ms_per_step"] for v in res.values() if "ms_per_step" in v])
    print(f"| {name} | {len(res)} | " + " | ".join(cells) + f" | {ms} |")
    per_seed += [(name, r, v) for r, v in res.items()]
  print("\nPer seed:\n")
  print("| method | run | " + " | ".join(name for _, name in COLUMNS) + " |")
  print("|---|---|" + "---:|" * len(COLUMNS))
  for name, r, v in per_seed:
    print(f"| {name} | {r} | " + " | ".join(
        "-" if v.get(k) is None else f"{v[k]:.2f}" for k, _ in COLUMNS) + " |")


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "runs/c9")
