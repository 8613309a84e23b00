"""Semantic textual similarity: Spearman/Pearson between cosine(embeddings) and gold scores.

    scores = sts.evaluate(embed_fn, pairs_ds, tokenizer, seq_len=64)
    # {"spearman": 0.82, "pearson": 0.83, "n": 1379}

`embed_fn(batch) -> x_BD` maps a padded batch {input_ids, attention_mask, token_type_ids} to
sentence vectors; it is usually a jitted closure over params (see `pooled_embed_fn`). Reported
×100 in docs, as SentEval does.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc

POOLERS = ("cls", "cls_before_pooler", "mean", "first_last_avg", "last_two_avg")


def pool(out: enc.EncoderOutput, mask_BL, pooler: str, params=None):
  """Sentence vectors from encoder outputs (SimCSE's pooler names); float32."""
  m_BL1 = mask_BL[..., None].astype(jnp.float32)

  def masked_mean(h_BLD):
    return jnp.sum(h_BLD.astype(jnp.float32) * m_BL1, 1) / jnp.maximum(m_BL1.sum(1), 1.0)

  if pooler == "cls_before_pooler":
    return out.cls_BD.astype(jnp.float32)
  if pooler == "cls":
    return enc.pooler(params, out.cls_BD)
  if pooler == "mean":
    return masked_mean(out.last_BLD)
  if pooler == "first_last_avg":  # first Transformer layer (not the embeddings) and the last
    return (masked_mean(out.hidden_states_NBLD[1]) + masked_mean(out.last_BLD)) / 2
  if pooler == "last_two_avg":
    return (masked_mean(out.hidden_states_NBLD[-2]) + masked_mean(out.last_BLD)) / 2
  raise ClowlabError(f"clowlab: unknown pooler {pooler!r}; valid: {', '.join(POOLERS)}.")


def pooled_embed_fn(params, ecfg: enc.EncoderConfig, pooler: str = "mean") -> Callable:
  """A jitted batch -> sentence-vector function for an encoder params tree."""
  if pooler not in POOLERS:
    raise ClowlabError(f"clowlab: unknown pooler {pooler!r}; valid: {', '.join(POOLERS)}.")

  @jax.jit
  def fn(p, batch):
    out = enc.encode(p, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                     cfg=ecfg)
    return pool(out, batch["attention_mask"], pooler, p)

  return lambda batch: fn(params, batch)


def _pad(rows: list[list[int]], pad_id: int, length: int) -> np.ndarray:
  out = np.full((len(rows), length), pad_id, np.int32)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out


def embed_texts(embed_fn: Callable, texts: list[str], tokenizer, *, seq_len: int = 64,
                batch_size: int = 128) -> np.ndarray:
  """Embeds texts in fixed-size batches (the last one filled with empty strings) padded to a
  length bucket, so a handful of compilations serve any number of texts."""
  out = []
  for start in range(0, len(texts), batch_size):
    chunk = list(texts[start:start + batch_size])
    n = len(chunk)
    chunk += [""] * (batch_size - n)
    enc_ = tokenizer.encode(chunk, max_len=seq_len)
    lengths = np.array([len(r) for r in enc_["input_ids"]])
    # Pad to the smallest power-of-two bucket (>= 16) that fits: few shapes, little padding.
    length = min(seq_len, max(16, 1 << int(np.ceil(np.log2(max(lengths.max(), 1))))))
    batch = {"input_ids": _pad(enc_["input_ids"], tokenizer.pad_id, length),
             "attention_mask": (np.arange(length)[None] < lengths[:, None]).astype(np.int32),
             "token_type_ids": _pad(enc_["token_type_ids"], 0, length)}
    out.append(np.asarray(embed_fn(batch))[:n])
  return np.concatenate(out, 0) if out else np.zeros((0, 0), np.float32)


def cosine(a_ND: np.ndarray, b_ND: np.ndarray) -> np.ndarray:
  a = a_ND / np.maximum(np.linalg.norm(a_ND, axis=-1, keepdims=True), 1e-12)
  b = b_ND / np.maximum(np.linalg.norm(b_ND, axis=-1, keepdims=True), 1e-12)
  return np.sum(a * b, -1)


def correlations(sims: np.ndarray, gold: np.ndarray) -> dict[str, float]:
  return {"spearman": float(stats.spearmanr(sims, gold).statistic),
          "pearson": float(stats.pearsonr(sims, gold).statistic), "n": int(len(gold))}


def evaluate(embed_fn: Callable, pairs, tokenizer, *, seq_len: int = 64,
             batch_size: int = 128) -> dict[str, float]:
  """STS on a pairs dataset (columns text_a, text_b, label = gold score)."""
  for col in ("text_a", "text_b", "label"):
    if col not in pairs.column_names:
      raise ClowlabError(f"clowlab: STS data needs columns text_a, text_b, label; it has "
                         f"{pairs.column_names}. Load it with sources.load_pairs(columns=...).")
  a = embed_texts(embed_fn, pairs["text_a"], tokenizer, seq_len=seq_len, batch_size=batch_size)
  b = embed_texts(embed_fn, pairs["text_b"], tokenizer, seq_len=seq_len, batch_size=batch_size)
  return correlations(cosine(a, b), np.asarray(pairs["label"], np.float64))
