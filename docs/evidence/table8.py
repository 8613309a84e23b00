"""Markdown tables of the issue-8 evaluation JSONs: python docs/evidence/table8.py RUNS/ix_eval"""
import json
import pathlib
import sys

RUNS = {"ix_s0": "start (MMLM+TLM, 2500 steps)", "ix_n": "+1500 steps MMLM+TLM (no XLCo)",
        "ix_x": "+1500 steps InfoXLM (MMLM+TLM+XLCo)"}
LANGS = ("ara", "cmn", "deu", "fra", "hin", "jpn", "rus", "spa")
PAIRS = ("en_zh", "en_de", "en_es", "en_fr", "en_ru", "en_ja")


def load(d, run, task, pool):
  p = d / f"{run}_{task}_{pool}.json"
  return json.loads(p.read_text()) if p.is_file() and p.stat().st_size else None


def main(d):
  d = pathlib.Path(d)
  for pool in ("mean", "cls"):
    print(f"\nTatoeba top-1 accuracy %, xx->en / en->xx, layer 3 {pool}:\n")
    print("| model | " + " | ".join(LANGS) + " | avg |")
    print("|---|" + "---:|" * (len(LANGS) + 1))
    for run, name in RUNS.items():
      r = load(d, run, "tatoeba", pool)
      if r:
        cells = [f"{r[f'tatoeba_{x}_xx2en']:.1f} / {r[f'tatoeba_{x}_en2xx']:.1f}" for x in LANGS]
        print(f"| {name} | " + " | ".join(cells) + f" | {r['tatoeba_avg']:.2f} |")
    print(f"\nCross-lingual STS-B test, Spearman x 100, layer 3 {pool}:\n")
    print("| model | " + " | ".join(p.replace("_", "-") for p in PAIRS) + " | avg |")
    print("|---|" + "---:|" * (len(PAIRS) + 1))
    for run, name in RUNS.items():
      r = load(d, run, "xsts", pool)
      if r:
        print(f"| {name} | " + " | ".join(f"{r[f'xsts_{p}']:.2f}" for p in PAIRS) +
              f" | {r['xsts_avg']:.2f} |")


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "runs/ix_eval")
