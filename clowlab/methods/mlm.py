"""Masked-LM pretraining (BERT): the baseline every other method starts from or compares with.

Objective: cross-entropy of the original token at the selected positions (15%, 80/10/10,
optionally whole words), averaged over the selected tokens of the global batch. The vocabulary
projection is computed only at up to `mlm.max_predictions` selected positions per row, not at
all L positions: at V=30k it is the largest matmul of the step.
"""
from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import optax

from clowlab.data import masking, pipeline, sources
from clowlab.methods.base import DataContext, Method, text_spec
from clowlab.models import encoder as enc
from clowlab.models import heads

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def max_predictions(cfg) -> int:
  m = cfg.mlm.get("max_predictions", 0)
  # Enough for 15% plus the stochastic rounding / whole-word overshoot of the masker.
  return int(m) if m else max(1, math.ceil(cfg.seq_len * cfg.mlm.mask_prob * 1.34))


def init_heads(rng, ecfg: enc.EncoderConfig, cfg):
  return {"mlm_head": heads.init_mlm_head(rng, ecfg)}


def mlm_loss_on(params, view, rng, ecfg: enc.EncoderConfig, num_predictions: int, train=True):
  """(summed CE, number predicted, number correct, dropped) for one masked view of a batch."""
  out = enc.encode(params["encoder"], view["input_ids"], view["attention_mask"],
                   view["token_type_ids"], rng, train, cfg=ecfg,
                   positions_BL=view.get("position_ids"))
  return mlm_terms(params, out.last_BLD, view, ecfg, num_predictions)


def mlm_terms(params, last_BLD, view, ecfg: enc.EncoderConfig, num_predictions: int):
  """mlm_loss_on's sums from the encoder's last hidden states of the masked view."""
  w_BL = view["mlm_weights"]
  # The first `num_predictions` selected positions of each row (top_k is stable on ties).
  _, pos_BP = jax.lax.top_k(w_BL, num_predictions)
  take = lambda x: jnp.take_along_axis(x, pos_BP, axis=1)
  h_BPD = jnp.take_along_axis(last_BLD, pos_BP[..., None], axis=1)
  logits_BPV = heads.mlm_logits(params["mlm_head"], params["encoder"]["embeddings"]["word"],
                                h_BPD, ecfg)
  labels_BP, w_BP = take(view["mlm_labels"]), take(w_BL)
  ce_BP = optax.softmax_cross_entropy_with_integer_labels(logits_BPV, labels_BP)
  correct = jnp.sum((jnp.argmax(logits_BPV, -1) == labels_BP) * w_BP)
  return jnp.sum(ce_BP * w_BP), jnp.sum(w_BP), correct, jnp.sum(w_BL) - jnp.sum(w_BP)


def loss(params, state, batch, rng, ecfg: enc.EncoderConfig, cfg):
  ce, n, correct, dropped = mlm_loss_on(params, batch, rng, ecfg, max_predictions(cfg))
  n = jnp.maximum(n, 1.0)
  value = ce / n
  return value, {"mlm_loss": value, "mlm_accuracy": correct / n,
                 "mlm_dropped_predictions": dropped}, state


def _split_sentences(batch):
  out = []
  for t in batch["text"]:
    out.extend(s for s in _SENTENCE_END.split(t) if s.strip())
  return {"text": out}


def text_dataset(cfg, ctx: DataContext):
  """The unlabeled text of config.data.train, optionally split into sentences."""
  ds = sources.load_text(list(cfg.data.train), cache_dir=ctx.cache_dir)
  if cfg.data.get("split_sentences", False):
    ds = ds.map(_split_sentences, batched=True, remove_columns=ds.column_names,
                desc="Splitting sentences")
  return ds


def make_data(cfg, ctx: DataContext):
  tok_ds = pipeline.tokenize(text_dataset(cfg, ctx), ctx.tokenizer, seq_len=cfg.seq_len,
                             cache_dir=ctx.cache_dir)
  masker = masking.MlmMasker.from_tokenizer(ctx.tokenizer, masking.MaskingConfig(
      mask_prob=cfg.mlm.mask_prob, whole_word=cfg.mlm.whole_word))
  return pipeline.make_loader(tok_ds, global_batch_size=cfg.batch_size, seed=cfg.seed,
                              process_index=ctx.process_index, process_count=ctx.process_count,
                              transform=masker)


def evaluate(params, ecfg: enc.EncoderConfig, cfg, ctx: DataContext, mesh, files=None):
  """Masked-LM loss, accuracy and perplexity on config.data.eval (fixed masks from the seed).

  files: text files to use instead, as they are (no sentence splitting).
  """
  from clowlab import sharding  # noqa: PLC0415 - methods stay mesh-free except at evaluation
  split = files is None and cfg.data.get("split_sentences", False)
  files = list(cfg.data.get("eval", []) or []) if files is None else list(files)
  if not files:
    return {}
  ds = sources.load_text(files, cache_dir=ctx.cache_dir)
  if split:
    ds = ds.map(_split_sentences, batched=True, remove_columns=ds.column_names)
  tok_ds = pipeline.tokenize(ds, ctx.tokenizer, seq_len=cfg.seq_len, cache_dir=ctx.cache_dir)
  masker = masking.MlmMasker.from_tokenizer(ctx.tokenizer, masking.MaskingConfig(
      mask_prob=cfg.mlm.mask_prob, whole_word=cfg.mlm.whole_word))
  loader = pipeline.make_loader(tok_ds, global_batch_size=cfg.batch_size, seed=cfg.seed,
                                shuffle=False, num_epochs=1, drop_remainder=False,
                                process_index=ctx.process_index,
                                process_count=ctx.process_count, transform=masker)
  fn = jax.jit(lambda p, b: mlm_loss_on(p, b, None, ecfg, max_predictions(cfg), train=False)[:3])
  ce = n = correct = 0.0
  for batch in loader:
    batch = {k: v for k, v in batch.items() if k not in ("valid", "index")}
    c, k, r = jax.device_get(fn(params, sharding.global_batch(batch, mesh)))
    ce, n, correct = ce + float(c), n + float(k), correct + float(r)
  n = max(n, 1.0)
  return {"mlm_loss": ce / n, "mlm_accuracy": correct / n, "perplexity": math.exp(ce / n)}


def batch_spec(cfg, ecfg: enc.EncoderConfig):
  return text_spec(cfg.batch_size, cfg.seq_len, mlm=True)


METHOD = Method(name="mlm", init_heads=init_heads, loss=loss, make_data=make_data,
                evaluate=evaluate, batch_spec=batch_spec)
