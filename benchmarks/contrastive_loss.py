"""Global-batch InfoNCE: ms per forward+backward step of the three implementations.

    python benchmarks/contrastive_loss.py [--sizes 1024x128,4096x256] [--iters 10] [--symmetric]
                                          [--hard-negatives] [--chunk-size 1024] [--no-memory]

On 8 devices (fake CPU devices unless run on an accelerator host with >= 8 devices), batch
sharded over a ("data", "fsdp") = (4, 2) mesh:
  global/explicit  `info_nce` under jit, Explicit mesh axes (keys gathered by reshard)
  global/auto      `info_nce` under jit, Auto mesh axes (the compiler picks the collectives)
  shard_map        `info_nce_sharded` (explicit all_gather of the keys, local logits rows)
  chunked          `info_nce_chunked` under jit, Explicit axes
Each step is jit(value_and_grad) w.r.t. q and k, block_until_ready, median of --iters runs
after one warm-up. Then, compile only and on one device, the temp memory of plain vs chunked
at B=32768, D=256 (the plain logits alone are B^2 x 4 bytes = 4 GiB).
"""
from __future__ import annotations

import os

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import functools  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from clowlab.losses import contrastive as C  # noqa: E402

AXES = ("data", "fsdp")


def _step(fn, **kw):
  loss = lambda q, k, hn: fn(q, k, hard_negatives_BD=hn, **kw)[0]  # noqa: E731
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _median_ms(f, args, iters: int) -> float:
  jax.block_until_ready(f(*args))  # compile + warm-up
  times = []
  for _ in range(iters):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    times.append((time.perf_counter() - t) * 1e3)
  return statistics.median(times)


def measure(B: int, D: int, *, iters: int, chunk_size: int, symmetric: bool,
            hard_negatives: bool) -> dict[str, float]:
  rng = np.random.default_rng(0)
  host = [rng.normal(size=(B, D)).astype(np.float32) for _ in range(3)]
  kw = dict(temperature=0.05, symmetric=symmetric)
  variants = {
      "global/explicit": (AxisType.Explicit, C.info_nce, {}),
      "global/auto": (AxisType.Auto, C.info_nce, {}),
      "shard_map": (AxisType.Explicit, C.info_nce_sharded, dict(axis_names=AXES)),
      "chunked": (AxisType.Explicit, C.info_nce_chunked, dict(chunk_size=min(chunk_size, B))),
  }
  out = {}
  for name, (axis_type, fn, extra) in variants.items():
    mesh = jax.make_mesh((4, 2), AXES, axis_types=(axis_type,) * 2)
    with jax.set_mesh(mesh):
      q, k, hn = (jax.device_put(x, NamedSharding(mesh, P(AXES, None))) for x in host)
      out[name] = _median_ms(_step(fn, **kw, **extra), (q, k, hn if hard_negatives else None),
                             iters)
  return out


def memory(B: int = 32768, D: int = 256, chunk_size: int = 1024) -> dict[str, int]:
  """Compiled temp bytes (one device) of forward+backward, plain vs chunked."""
  s = jax.ShapeDtypeStruct((B, D), jnp.float32)
  res = {}
  for name, fn in (("plain", C.info_nce),
                   ("chunked", functools.partial(C.info_nce_chunked, chunk_size=chunk_size))):
    f = jax.jit(jax.grad(lambda q, k, fn=fn: fn(q, k, temperature=0.05)[0], argnums=(0, 1)))
    res[name] = f.lower(s, s).compile().memory_analysis().temp_size_in_bytes
  return res


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--sizes", default="1024x128,2048x256,4096x256",
                  help="comma-separated BxD global batch x embedding dim")
  ap.add_argument("--iters", type=int, default=10)
  ap.add_argument("--chunk-size", type=int, default=1024)
  ap.add_argument("--symmetric", action="store_true")
  ap.add_argument("--hard-negatives", action="store_true")
  ap.add_argument("--no-memory", action="store_true", help="skip the B=32768 compile")
  args = ap.parse_args()

  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; symmetric="
        f"{args.symmetric} hard_negatives={args.hard_negatives} chunk_size={args.chunk_size}")
  names = ["global/explicit", "global/auto", "shard_map", "chunked"]
  print(f"{'B':>6} {'D':>5} " + " ".join(f"{n:>16}" for n in names) + "   fastest")
  wins = {n: 0 for n in names}
  for size in args.sizes.split(","):
    B, D = (int(x) for x in size.lower().split("x"))
    ms = measure(B, D, iters=args.iters, chunk_size=args.chunk_size, symmetric=args.symmetric,
                 hard_negatives=args.hard_negatives)
    best = min(ms, key=ms.get)
    wins[best] += 1
    print(f"{B:>6} {D:>5} " + " ".join(f"{ms[n]:>13.2f} ms" for n in names) + f"   {best}")
  print("fastest most often: " + max(wins, key=wins.get) + f"  ({wins})")

  if not args.no_memory:
    mem = memory(chunk_size=args.chunk_size)
    print(f"\nforward+backward temp memory at B=32768, D=256 (one device, compile only): "
          f"plain {mem['plain'] / 2**30:.2f} GiB, chunked(chunk_size={args.chunk_size}) "
          f"{mem['chunked'] / 2**30:.2f} GiB; plain logits alone are "
          f"{32768**2 * 4 / 2**30:.0f} GiB")


if __name__ == "__main__":
  main()
