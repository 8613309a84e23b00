"""The matmuls of one MiniLM layer (batch 64 x seq 64 rows), XLA:CPU vs PyTorch, GFLOP/s.

    python benchmarks/gemm.py torch          # PyTorch (2 threads)
    python benchmarks/gemm.py xla            # XLA with the environment's XLA_FLAGS

nn/nt/tn: forward, data-gradient and weight-gradient shapes of the dense layers; bnt: the
batched attention scores (64*12 heads x 64 x 32). Run each in its own process.
"""
import sys
import time

import numpy as np

SHAPES = [((4096, 384), (384, 1536), "nn"), ((4096, 1536), (1536, 384), "nn"),
          ((4096, 384), (384, 384), "nn"), ((4096, 1536), (384, 1536), "nt"),
          ((4096, 384), (4096, 1536), "tn"), ((4096, 384), (4096, 384), "tn"),
          ((768, 64, 32), (768, 64, 32), "bnt")]


def flops(a, b, kind):
  if kind == "nt":
    return 2 * a[0] * a[1] * b[0]
  if kind == "bnt":
    return 2 * a[0] * a[1] * a[2] * b[1]
  return 2 * a[0] * a[1] * b[1]


def bench(name, make):
  for a, b, kind in SHAPES:
    f = make(a, b, kind)
    for _ in range(3):
      f()
    t = time.perf_counter()
    for _ in range(10):
      f()
    dt = (time.perf_counter() - t) / 10
    print(f"{name} {kind:3s} {a}x{b}: {dt * 1e3:6.1f} ms {flops(a, b, kind) / dt / 1e9:5.0f} GFLOP/s")


def main():
  rng = np.random.default_rng(0)
  if sys.argv[1:] == ["torch"]:
    import torch  # noqa: PLC0415
    torch.set_num_threads(2)

    def make(a, b, kind):
      A, B = torch.from_numpy(rng.standard_normal(a, np.float32)), torch.from_numpy(
          rng.standard_normal(b, np.float32))
      return {"nn": lambda: A @ B, "nt": lambda: A @ B.T, "tn": lambda: A.T @ B,
              "bnt": lambda: A @ B.transpose(1, 2)}[kind]
    bench("torch", make)
  else:
    import jax  # noqa: PLC0415

    def make(a, b, kind):
      A, B = (jax.numpy.asarray(rng.standard_normal(s, np.float32)) for s in (a, b))
      fn = jax.jit({"nn": lambda x, y: x @ y, "nt": lambda x, y: x @ y.T,
                    "tn": lambda x, y: x.T @ y, "bnt": lambda x, y: x @ y.transpose(0, 2, 1)}[kind])
      return lambda: fn(A, B).block_until_ready()
    bench("xla", make)


if __name__ == "__main__":
  main()
