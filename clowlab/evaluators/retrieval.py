"""Semantic search and bitext retrieval by cosine similarity, exact, sharded over devices.

    idx_QK, score_QK = retrieval.search(q_QD, corpus_ND, k=10)   # top-k corpus rows per query
    retrieval.evaluate_aligned(embedder, src_texts, tgt_texts)     # Tatoeba style, both ways
    retrieval.evaluate_search(embedder, queries, corpus, qrels)    # recall@k, MRR@10, nDCG@10

`search` places the corpus embeddings sharded over every device (rows padded to a multiple of
the device count and masked), keeps the queries replicated, and inside `jax.shard_map` each
device scores a chunk of queries against its corpus rows, keeps its local top-k with global row
ids, and an all-gather of the n_dev x k candidates gives the exact global top-k. Memory per device
is corpus/n_dev rows plus a chunk x corpus/n_dev score block, so corpora of millions fit.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from clowlab.errors import ClowlabError

KS = (1, 5, 10)


def _normalize(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=None)
def _search_fn(mesh, k: int):
  axis = mesh.axis_names[0]

  def local(q_CD, c_nD, valid_n):
    n = c_nD.shape[0]
    s_Cn = jnp.einsum("cd,nd->cn", q_CD, c_nD, preferred_element_type=jnp.float32)
    s_Cn = jnp.where(valid_n[None], s_Cn, -jnp.inf)
    kk = min(k, n)
    top_s, top_i = jax.lax.top_k(s_Cn, kk)
    top_i = top_i + jax.lax.axis_index(axis) * n  # global corpus row ids
    all_s = jax.lax.all_gather(top_s, axis, axis=1, tiled=True)  # C x (n_dev * kk)
    all_i = jax.lax.all_gather(top_i, axis, axis=1, tiled=True)
    best_s, pos = jax.lax.top_k(all_s, min(k, all_s.shape[1]))
    return best_s, jnp.take_along_axis(all_i, pos, axis=1)

  return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P(axis), P(axis)),
                               out_specs=(P(), P()), check_vma=False))


def search(queries_QD, corpus_ND, k: int = 10, *, chunk: int = 1024, normalize: bool = True,
           devices: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Exact top-k corpus rows by cosine (or dot product) for each query: (ids, scores), [Q, k]."""
  q, c = np.asarray(queries_QD, np.float32), np.asarray(corpus_ND, np.float32)
  if q.ndim != 2 or c.ndim != 2 or q.shape[1] != c.shape[1]:
    raise ClowlabError(f"clowlab: search needs [Q, D] queries and [N, D] corpus with the same D, "
                       f"got {q.shape} and {c.shape}.")
  if not len(c):
    raise ClowlabError("clowlab: search got an empty corpus.")
  if normalize:
    q, c = _normalize(q), _normalize(c)
  devs = list(devices) if devices is not None else jax.devices()
  mesh = jax.sharding.Mesh(np.array(devs), ("corpus",))
  n_dev = len(devs)
  N = len(c)
  pad = -N % n_dev
  c = np.concatenate([c, np.zeros((pad, c.shape[1]), np.float32)])
  valid = np.arange(N + pad) < N
  c_dev = jax.device_put(c, NamedSharding(mesh, P("corpus")))
  v_dev = jax.device_put(valid, NamedSharding(mesh, P("corpus")))
  k = min(k, N)
  fn = _search_fn(mesh, k)
  ids, scores = [], []
  C = min(chunk, max(len(q), 1))
  for start in range(0, len(q), C):
    part = q[start:start + C]
    n = len(part)
    if n < C:  # one shape for every chunk
      part = np.concatenate([part, np.zeros((C - n, q.shape[1]), np.float32)])
    s, i = fn(jax.device_put(part, NamedSharding(mesh, P())), c_dev, v_dev)
    ids.append(np.asarray(i)[:n])
    scores.append(np.asarray(s)[:n])
  if not ids:
    return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
  return np.concatenate(ids).astype(np.int64), np.concatenate(scores)


def ranking_metrics(top_QK: np.ndarray, relevant: Sequence[set[int]],
                    ks: Sequence[int] = KS) -> dict[str, float]:
  """recall@k (x 100), MRR@10 and nDCG@10 (binary relevance, x 100) of ranked corpus ids."""
  if len(top_QK) != len(relevant):
    raise ClowlabError("clowlab: one relevance set per query is needed.")
  out = {f"recall@{k}": 0.0 for k in ks}
  mrr = ndcg = 0.0
  for top, rel in zip(top_QK, relevant):
    if not rel:
      continue
    hits = np.array([int(t) in rel for t in top])
    for k in ks:
      out[f"recall@{k}"] += hits[:k].sum() / len(rel)
    first = np.flatnonzero(hits[:10])
    mrr += 1.0 / (first[0] + 1) if len(first) else 0.0
    dcg = sum(1.0 / math.log2(r + 2) for r in np.flatnonzero(hits[:10]))
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(rel), 10)))
    ndcg += dcg / idcg
  n = max(sum(1 for r in relevant if r), 1)
  out = {k: 100 * v / n for k, v in out.items()}
  out.update({"mrr@10": 100 * mrr / n, "ndcg@10": 100 * ndcg / n, "num_queries": n})
  return out


def evaluate_aligned(embedder, source: Sequence[str], target: Sequence[str]) -> dict[str, float]:
  """Line i of source translates line i of target (Tatoeba): top-1 accuracy (%) both ways, plus
  the ranking metrics of source -> target."""
  if len(source) != len(target):
    raise ClowlabError(f"clowlab: retrieval needs line-aligned files; got {len(source)} source "
                       f"and {len(target)} target lines.")
  s, t = embedder(source), embedder(target)
  k = min(10, len(t))
  s2t, _ = search(s, t, k)
  t2s, _ = search(t, s, 1)
  gold = np.arange(len(s))
  out = {"acc_source_to_target": 100 * float(np.mean(s2t[:, 0] == gold)),
         "acc_target_to_source": 100 * float(np.mean(t2s[:, 0] == gold)), "n": len(s)}
  out.update(ranking_metrics(s2t, [{i} for i in gold]))
  return out


def evaluate_search(embedder, queries: Mapping[str, str], corpus: Mapping[str, str],
                    qrels: Mapping[str, set[str]], k: int = 10) -> dict[str, float]:
  """Queries {id: text}, corpus {id: text}, qrels {query id: relevant corpus ids}."""
  qids = [q for q in queries if qrels.get(q)]
  if not qids:
    raise ClowlabError("clowlab: no query has a relevant document in qrels; check the ids.")
  cids = list(corpus)
  pos = {c: i for i, c in enumerate(cids)}
  unknown = sorted({d for q in qids for d in qrels[q] if d not in pos})
  if unknown:
    raise ClowlabError(f"clowlab: qrels name corpus ids that are not in the corpus, e.g. "
                       f"{unknown[:3]}.")
  q_emb = embedder([queries[q] for q in qids])
  c_emb = embedder([corpus[c] for c in cids])
  top, _ = search(q_emb, c_emb, min(k, len(cids)))
  return ranking_metrics(top, [{pos[d] for d in qrels[q]} for q in qids])


def read_id_text(path: str) -> dict[str, str]:
  """`id<TAB>text` lines (a header line `id<TAB>text` is skipped)."""
  out = {}
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      line = line.rstrip("\n")
      if not line.strip() or (n == 1 and line.lower().startswith("id\t")):
        continue
      if "\t" not in line:
        raise ClowlabError(f"clowlab: {path}:{n} is not `id<TAB>text`.")
      i, text = line.split("\t", 1)
      out[i] = text
  return out


def read_qrels(path: str) -> dict[str, set[str]]:
  """`query_id<TAB>corpus_id[<TAB>score]` lines; score <= 0 means not relevant."""
  out: dict[str, set[str]] = {}
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      parts = line.rstrip("\n").split("\t")
      if not line.strip() or (n == 1 and parts[0].lower() in ("query-id", "qid", "query_id")):
        continue
      if len(parts) < 2:
        raise ClowlabError(f"clowlab: {path}:{n} is not `query_id<TAB>corpus_id[<TAB>score]`.")
      if len(parts) > 2 and float(parts[2]) <= 0:
        continue
      out.setdefault(parts[0], set()).add(parts[1])
  return out


def read_lines(path: str) -> list[str]:
  with open(path, encoding="utf-8") as f:
    return [line.rstrip("\n") for line in f]
