"""Texts -> sentence vectors through a jitted batch function: the batching every embedding path
shares (evaluators, BERT-flow's frozen-encoder features, `clowlab.embed.load`).

Speed: texts are sorted by length, cut into batches of `batch_size`, and each batch is padded
to a multiple of `pad_to` tokens, so the jitted function sees few distinct shapes and little
padding; the result comes back in the input order. The tokenizer is any object with
`encode(texts, max_len=...)` and `pad_id` (clowlab.data.tokenizers), so this module stays in the
models layer.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from clowlab.models import encoder as enc
from clowlab.models import poolers


@dataclasses.dataclass
class Embedder:
  """texts -> float32 vectors. `fn(batch) -> x_BD` takes a padded numpy batch
  {input_ids, attention_mask, token_type_ids}."""
  tokenizer: Any
  fn: Callable[[dict], Any]
  seq_len: int = 128
  batch_size: int = 64
  pad_to: int = 16
  description: str = ""

  def batches(self, texts: Sequence[str]):
    """(positions in `texts`, padded batch) in length order; the last batch is filled with
    empty strings so every batch has batch_size rows (fewer shapes to compile)."""
    enc_ = self.tokenizer.encode(list(texts), max_len=self.seq_len)
    ids, types = enc_["input_ids"], enc_["token_type_ids"]
    lengths = np.array([len(r) for r in ids], np.int64)
    order = np.argsort(-lengths, kind="stable")
    B = self.batch_size
    for start in range(0, len(order), B):
      pos = order[start:start + B]
      longest = int(lengths[pos].max()) if len(pos) else 1
      L = min(self.seq_len, -(-max(longest, 1) // self.pad_to) * self.pad_to)
      input_ids = np.full((B, L), self.tokenizer.pad_id, np.int32)
      type_ids = np.zeros((B, L), np.int32)
      mask = np.zeros((B, L), np.int32)
      for row, i in enumerate(pos):
        n = lengths[i]
        input_ids[row, :n], type_ids[row, :n], mask[row, :n] = ids[i], types[i], 1
      mask[len(pos):, 0] = 1  # filler rows: one token so no row is all padding
      yield pos, {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": type_ids}

  def __call__(self, texts: Sequence[str]) -> np.ndarray:
    texts = list(texts)
    out, pending = None, []
    for pos, batch in self.batches(texts):
      pending.append((pos, self.fn(batch)))  # dispatch ahead; fetch below
      if len(pending) > 2:
        out = _store(out, *pending.pop(0), len(texts))
    for p in pending:
      out = _store(out, *p, len(texts))
    return out if out is not None else np.zeros((0, 0), np.float32)


def _store(out, pos, x_BD, n):
  x_BD = np.asarray(x_BD, np.float32)
  if out is None:
    out = np.zeros((n, x_BD.shape[-1]), np.float32)
  out[pos] = x_BD[:len(pos)]
  return out


def pooled_fn(params, ecfg: enc.EncoderConfig, pooling: str = "mean",
              layer: int | None = None) -> Callable[[dict], Any]:
  """A jitted batch -> vectors function with a parameter-free pooler over encoder params.

  layer: pool this entry of hidden_states_NBLD instead (poolers.pool_layer; 0 = embeddings,
  -1 = last) with pooling "mean" or "cls" (the raw CLS vector; "cls_before_pooler" is a synonym).
  """
  if layer is None:
    poolers.check_pooler(pooling)
  else:
    pooling = "cls" if pooling == "cls_before_pooler" else pooling
    layer = poolers.check_layer(pooling, layer, ecfg.num_layers + 1) % (ecfg.num_layers + 1)
    # Layers above the pooled one do not run.
    params, ecfg = enc.truncate(params, ecfg, layer)

  @jax.jit
  def fn(p, batch):
    out = enc.encode(p, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                     cfg=ecfg)
    if layer is not None:
      return poolers.pool_layer(out, batch["attention_mask"], pooling, layer)
    return poolers.pool(out, batch["attention_mask"], pooling, p)

  return lambda batch: fn(params, batch)


def method_fn(method, params, ecfg: enc.EncoderConfig, cfg) -> Callable[[dict], Any]:
  """A jitted batch -> vectors function that embeds as `method.embed` does."""
  fn = jax.jit(lambda p, b: method.embed(p, b, ecfg, cfg))
  return lambda batch: fn(params, batch)
