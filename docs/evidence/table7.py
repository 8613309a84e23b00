"""Issue 7 table: mean ± std over seeds of the finetuning results in a folder of
<model>_<task>_<seed>.json files (the last JSON line of `clowlab.evaluate --task=classification`)."""
import collections
import json
import pathlib
import statistics
import sys

METRIC = {"sst2": "accuracy", "rte": "accuracy", "stsb": "spearman"}
runs = collections.defaultdict(list)
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
  model, task, _ = f.stem.rsplit("_", 2)
  text = f.read_text().strip()
  if text:
    runs[(model, task)].append(json.loads(text)[METRIC[task]])
models = list(dict.fromkeys(m for m, _ in runs))
print("| model | " + " | ".join(f"{t} ({METRIC[t]})" for t in METRIC) + " |")
print("|---" * (len(METRIC) + 1) + "|")
for m in models:
  cells = []
  for t in METRIC:
    v = runs.get((m, t), [])
    cells.append(f"{statistics.mean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0:.2f} "
                 f"(n={len(v)}: {', '.join(f'{x:.1f}' for x in v)})" if v else "-")
  print(f"| {m} | " + " | ".join(cells) + " |")
