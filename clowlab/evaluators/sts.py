"""Semantic textual similarity: Spearman (x 100) between cosine(embeddings) and gold scores.

    r = sts.evaluate(embedder, {"stsb_test": pairs_ds})     # embedder: clowlab.embed.Embedder
    # {"spearman": 82.0, "spearman_wmean": 82.0, "pearson": ..., "stsb_test/spearman": 82.0, ...}

With several sets (the STS12-16 subsets of a year, or several languages) both aggregations the
literature uses are reported side by side: "all" (`spearman`: one correlation over the
concatenation of the sets; SimCSE's "all" setting) and "wmean" (`spearman_wmean`: the mean of
the per-set correlations weighted by their sizes). With one set they coincide.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from clowlab.errors import ClowlabError


def cosine(a_ND: np.ndarray, b_ND: np.ndarray) -> np.ndarray:
  a = a_ND / np.maximum(np.linalg.norm(a_ND, axis=-1, keepdims=True), 1e-12)
  b = b_ND / np.maximum(np.linalg.norm(b_ND, axis=-1, keepdims=True), 1e-12)
  return np.sum(a * b, -1)


def correlations(sims: np.ndarray, gold: np.ndarray) -> dict[str, float]:
  """Spearman and Pearson x 100 (as SentEval/SimCSE report them) and the number of pairs."""
  if len(gold) < 2:
    raise ClowlabError(f"clowlab: STS needs at least 2 scored pairs, got {len(gold)}.")
  return {"spearman": 100 * float(stats.spearmanr(sims, gold).statistic),
          "pearson": 100 * float(stats.pearsonr(sims, gold).statistic), "n": int(len(gold))}


def load(path: str, columns: Sequence | None = None, *, cache_dir: str | None = None,
         header: bool | None = None):
  """An STS file as a pairs dataset (text_a, text_b, label = gold score); see sources.load_pairs.

  columns: (first, second, score) as header names or 0-based indices; None guesses from the
  header (sentence1/sentence2/score, ...).
  """
  from clowlab.data import sources  # noqa: PLC0415
  ds = sources.load_pairs(path, columns=columns, header=header, cache_dir=cache_dir)
  if "label" not in ds.column_names:
    raise ClowlabError(f"clowlab: {path} has no score column; pass columns=(first, second, "
                       "score), e.g. --columns=sentence1,sentence2,score.")
  return ds


def evaluate(embedder, sets: Mapping[str, object]) -> dict[str, float]:
  """STS over named pairs datasets (columns text_a, text_b, label); see the module doc."""
  if not sets:
    raise ClowlabError("clowlab: STS evaluation got no data sets.")
  out, sims_all, gold_all, weighted = {}, [], [], 0.0
  for name, pairs in sets.items():
    for col in ("text_a", "text_b", "label"):
      if col not in pairs.column_names:
        raise ClowlabError(f"clowlab: STS set {name!r} needs columns text_a, text_b, label; it "
                           f"has {pairs.column_names}. Load it with sts.load(path, columns=...).")
    a, b = embedder(pairs["text_a"]), embedder(pairs["text_b"])
    sims, gold = cosine(a, b), np.asarray(pairs["label"], np.float64)
    c = correlations(sims, gold)
    out.update({f"{name}/spearman": c["spearman"], f"{name}/pearson": c["pearson"],
                f"{name}/n": c["n"]})
    sims_all.append(sims)
    gold_all.append(gold)
    weighted += c["spearman"] * c["n"]
  c = correlations(np.concatenate(sims_all), np.concatenate(gold_all))
  out.update({"spearman": c["spearman"], "pearson": c["pearson"], "n": c["n"],
              "spearman_wmean": weighted / c["n"]})
  return out
