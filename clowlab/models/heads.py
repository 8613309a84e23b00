"""Heads on top of the encoder, as pure functions over small params trees.

MLM head (BERT's `cls.predictions` / RoBERTa's `lm_head`): transform (dense + activation +
LayerNorm), then a decoder tied to the word embeddings plus an output bias.
Projection heads: an MLP of configurable depth for contrastive objectives.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from clowlab.models import encoder as enc

Params = enc.Params


def _normal(key, shape, std):
  return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)


def init_mlm_head(rng: jax.Array, cfg: enc.EncoderConfig) -> Params:
  D = cfg.hidden_size
  return {
      "dense": {"kernel": _normal(rng, (D, D), cfg.initializer_range),
                "bias": jnp.zeros((D,), jnp.float32)},
      "ln": {"scale": jnp.ones((D,), jnp.float32), "bias": jnp.zeros((D,), jnp.float32)},
      "bias": jnp.zeros((cfg.vocab_size,), jnp.float32),
  }


def mlm_logits(head: Params, word_embeddings_VD, x_BLD, cfg: enc.EncoderConfig):
  """Vocabulary logits (float32) for hidden states x; the decoder is the tied word embeddings."""
  dt = x_BLD.dtype
  h_BLD = enc.ACTIVATIONS[cfg.activation](enc.dense(x_BLD, head["dense"], dt))
  h_BLD = enc.layer_norm(h_BLD, head["ln"], cfg.layer_norm_eps)
  logits_BLV = jnp.einsum("...d,vd->...v", h_BLD, word_embeddings_VD.astype(dt),
                          preferred_element_type=jnp.float32)
  return logits_BLV + head["bias"]


def init_projection(rng: jax.Array, dims: tuple[int, ...], std: float = 0.02) -> Params:
  """An MLP `dims[0] -> dims[1] -> ... -> dims[-1]` as {"layers": [{"kernel", "bias"}, ...]}."""
  keys = jax.random.split(rng, len(dims) - 1)
  return {"layers": [{"kernel": _normal(k, (i, o), std), "bias": jnp.zeros((o,), jnp.float32)}
                     for k, i, o in zip(keys, dims[:-1], dims[1:])]}


def projection(head: Params, x_BD, activation: str = "tanh", final_activation: bool = False):
  """Dense layers with `activation` between them (and after the last if `final_activation`,
  as SimCSE's dense+tanh MLP); float32 output."""
  act = {"tanh": jnp.tanh, "relu": jax.nn.relu, "gelu": jax.nn.gelu}[activation]
  x_BD = x_BD.astype(jnp.float32)
  n = len(head["layers"])
  for i, p in enumerate(head["layers"]):
    x_BD = x_BD @ p["kernel"] + p["bias"]
    if i < n - 1 or final_activation:
      x_BD = act(x_BD)
  return x_BD
