"""Issue 6 figure: bits/dim during BERT-flow training, and the covariance spectrum of the STS-B
test sentence vectors before (raw pooled) and after (whitening, flow latent) for each run.

    python docs/evidence/plot_flow.py runs/bert_flow_en_small_fla runs/bert_flow_minilm_fla \
        --out docs/img/bert_flow.png          # needs matplotlib (not a clowlab dependency)
"""
import argparse
import json
import os
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main():
  p = argparse.ArgumentParser()
  p.add_argument("workdirs", nargs="+")
  p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "stsb_multi_mt" /
                                       "stsb-en-test.csv"))
  p.add_argument("--out", default=str(REPO / "docs" / "img" / "bert_flow.png"))
  args = p.parse_args()

  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  from clowlab import embed  # noqa: PLC0415
  from clowlab.convert import workdir as workdir_lib  # noqa: PLC0415
  from clowlab.data import sources  # noqa: PLC0415
  from clowlab.methods import bert_flow, whitening  # noqa: PLC0415

  ds = sources.load_pairs(args.data, columns=[0, 1, 2])
  texts = list(dict.fromkeys(list(ds["text_a"]) + list(ds["text_b"])))
  fig, axes = plt.subplots(1, 1 + len(args.workdirs), figsize=(4.2 * (1 + len(args.workdirs)), 3.4))
  for wd in args.workdirs:
    name = os.path.basename(wd.rstrip("/")).replace("bert_flow_", "")
    rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
    tr = [r for r in rows if r["split"] == "train" and "bits_per_dim" in r]
    axes[0].plot([r["step"] for r in tr], [r["bits_per_dim"] for r in tr], label=name)
  axes[0].set_xlabel("step")
  axes[0].set_ylabel("bits/dim (train batch)")
  axes[0].set_title("BERT-flow MLE")
  axes[0].legend(fontsize=7)
  for ax, wd in zip(axes[1:], args.workdirs):
    name = os.path.basename(wd.rstrip("/")).replace("bert_flow_", "")
    params, _, meta, _ = workdir_lib.load_workdir(wd)
    pooler = meta["config"]["flow"]["pooler"]
    raw = embed.load(wd, pooling=pooler, seq_len=64)(texts)
    z = embed.load(wd, seq_len=64)(texts)  # the method's own vector: the flow latent
    white = whitening.apply(params["whitening"], raw)
    for label, v in (("raw " + pooler, raw), ("whitening", white), ("flow z", z)):
      eig = np.sort(np.linalg.eigvalsh(np.cov(v, rowvar=False)))[::-1]
      iso = bert_flow.isotropy(v)
      ax.semilogy(eig / eig.sum(), label=f"{label} (mean cos {iso['mean_cos']:.2f})")
    ax.set_title(f"{name}: covariance spectrum, STS-B test", fontsize=9)
    ax.set_xlabel("eigenvalue rank")
    ax.set_ylabel("share of variance")
    ax.legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  fig.savefig(args.out, dpi=110)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
