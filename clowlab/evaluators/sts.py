"""Semantic textual similarity: Spearman (x 100) between cosine(embeddings) and gold scores.

    r = sts.evaluate(embedder, {"stsb_test": pairs_ds})     # embedder: clowlab.embed.Embedder
    # {"spearman": 82.0, "spearman_wmean": 82.0, "pearson": ..., "stsb_test/spearman": 82.0, ...}

With several sets (the STS12-16 subsets of a year, or several languages) both aggregations the
literature uses are reported side by side: "all" (`spearman`: one correlation over the
concatenation of the sets; SimCSE's "all" setting) and "wmean" (`spearman_wmean`: the mean of
the per-set correlations weighted by their sizes). With one set they coincide.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import stats

from clowlab.data import sources
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


# STS files are read by the data layer (BERT-flow trains on their sentences too).
load = sources.load_scored_pairs


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


def run(spec: dict, ctx) -> dict[str, float]:
  """Entry {"type": "sts", "sets": [{name, path, columns}, ...], "batch_size": 64, "counts":
  False}: Spearman x 100 of the method's evaluation-mode embedding (per set, "all" and
  "wmean"; with counts, the number of pairs as <name>/n and n)."""
  sets = sources.scored_pair_sets(spec.get("sets", []), ctx.cache_dir,
                                  spec.get("key", "eval.sts"))
  if not sets:
    return {}
  r = evaluate(ctx.embedder(int(spec.get("batch_size", 64))), sets)
  if spec.get("counts", False):  # the pair counts too (the CLI's JSON has them)
    return r
  return {k: float(v) for k, v in r.items() if not k.endswith("/n") and k != "n"}
