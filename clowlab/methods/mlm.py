"""Masked-LM pretraining (BERT): the baseline every other method starts from or compares with.

Objective: cross-entropy of the original token at the selected positions (15%, 80/10/10,
optionally whole words), averaged over the selected tokens of the global batch. The vocabulary
projection is computed only at up to `mlm.max_predictions` selected positions per row, not at
all L positions: at V=30k it is the largest matmul of the step.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from clowlab.data import masking, pipeline, sources
from clowlab.methods.base import DataContext, Method, text_spec
from clowlab.models import encoder as enc
from clowlab.models import heads


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


def text_dataset(cfg, ctx: DataContext):
  """The unlabeled text of config.data.train, optionally split into sentences."""
  ds = sources.load_text(list(cfg.data.train), cache_dir=ctx.cache_dir)
  if cfg.data.get("split_sentences", False):
    ds = ds.map(sources.split_sentences, batched=True, remove_columns=ds.column_names,
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


def heldout_terms(params, batch, ecfg: enc.EncoderConfig, cfg):
  """(cross-entropy sum, predictions, correct) of a masked batch in evaluation mode: the MLM
  head the held-out MLM evaluator (evaluators/mlm.py) scores."""
  return mlm_loss_on(params, batch, None, ecfg, max_predictions(cfg), train=False)[:3]


def evals(cfg, cache_dir: str) -> dict:
  """Default evaluation: held-out masked-LM on config.data.eval (split into sentences as the
  training text is)."""
  files = list(cfg.data.get("eval", []) or [])
  return {"mlm": {"type": "mlm", "files": files,
                  "split_sentences": bool(cfg.data.get("split_sentences", False))}} if files else {}


def batch_spec(cfg, ecfg: enc.EncoderConfig):
  return text_spec(cfg.batch_size, cfg.seq_len, mlm=True)


METHOD = Method(name="mlm", init_heads=init_heads, loss=loss, make_data=make_data,
                batch_spec=batch_spec, evals=evals, mlm_eval=heldout_terms)
