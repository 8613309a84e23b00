"""BERT-whitening (Su et al., 2021): the closed-form baseline for BERT-flow.

    w = fit(x_ND)                         # {"mean": D, "kernel": D x D}, float32
    y_NK = apply(w, x_ND, k=256)          # (x - mean) @ kernel[:, :k]: zero mean, identity cov

kernel = U diag(1 / sqrt(s)) from the SVD of the covariance, columns in decreasing variance, so
keeping the first k columns is the paper's dimension reduction. Fitted in float64 from moments,
so several hosts can sum their moments (`moments` then `from_moments`) and fit one transform.
"""
from __future__ import annotations

import numpy as np

from clowlab.errors import ClowlabError


def moments(x_ND: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
  """(n, sum x, sum x x^T) in float64."""
  x = np.asarray(x_ND, np.float64)
  return len(x), x.sum(0), x.T @ x


def from_moments(n: int, sum_D: np.ndarray, sumsq_DD: np.ndarray, eps: float = 1e-8) -> dict:
  if n < 2:
    raise ClowlabError(f"clowlab: whitening needs at least 2 sentences, got {n}.")
  mean = sum_D / n
  cov = (sumsq_DD - n * np.outer(mean, mean)) / (n - 1)
  u, s, _ = np.linalg.svd((cov + cov.T) / 2)
  kernel = u / np.sqrt(np.maximum(s, eps))[None, :]
  return {"mean": mean.astype(np.float32), "kernel": kernel.astype(np.float32)}


def fit(x_ND: np.ndarray) -> dict:
  return from_moments(*moments(x_ND))


def apply(w, x_ND, k: int = 0):
  """Whitened vectors; k > 0 keeps the k highest-variance directions. Works on numpy or jax."""
  kernel = w["kernel"] if not k else w["kernel"][:, :k]
  return (x_ND - w["mean"]) @ kernel
