"""Issue 6 table: STS Spearman x 100 and isotropy of raw / whitening / flow vectors from the eval
records of BERT-flow workdirs (python docs/evidence/table6.py runs/bert_flow_*)."""
import json
import os
import sys

VARIANTS = ("raw", "whitening", "whitening_256", "whitening_128", "flow")
for wd in sys.argv[1:]:
  rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
  ev = [r for r in rows if r["split"] == "eval"][-1]
  tr = [r for r in rows if r["split"] == "train"]
  sets = sorted({k.split("/")[1] for k in ev if k.startswith("raw/") and k.count("/") == 2
                 and k.endswith("/spearman")})
  print(f"## {os.path.basename(wd)} (step {ev['step']}; train bits/dim {tr[0]['bits_per_dim']:.3f}"
        f" at step {tr[0]['step']} -> {tr[-1]['bits_per_dim']:.3f}; held-out {ev['bits_per_dim']:.3f})")
  print("| vectors | " + " | ".join(sets) + " | all | wmean | mean cos | top eig share |")
  print("|---" * (len(sets) + 5) + "|")
  for v in VARIANTS:
    if f"{v}/spearman" not in ev:
      continue
    cells = [f"{ev[f'{v}/{s}/spearman']:.2f}" for s in sets]
    cells += [f"{ev[f'{v}/spearman']:.2f}", f"{ev[f'{v}/spearman_wmean']:.2f}",
              f"{ev[f'{v}/isotropy/mean_cos']:.3f}", f"{ev[f'{v}/isotropy/top_eig_share']:.4f}"]
    print(f"| {v} | " + " | ".join(cells) + " |")
  print()
