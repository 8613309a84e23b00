"""Sentence vectors from encoder outputs: SimCSE's parameter-free poolers and the layer-wise
attention pooler (Oh et al., COLING 2022, "Don't Judge a Language Model by Its Last Layer").

    x_BD = pool(out, mask_BL, "mean")                       # cls | cls_before_pooler | mean | ...
    x_BD = pool_layer(out, mask_BL, "mean", layer=8)         # one layer's mean or raw CLS vector
    x_B2D = layer_attention(p, out, mask_BL, rng, train)    # [last CLS; attention over layers]

Every pooler averages only over real tokens (attention_mask 1): padding never reaches the vector.
Outputs are float32 whatever the compute dtype.
"""
from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc

# SimCSE's names; first_last_avg is the first Transformer layer (not the embeddings) + the last.
POOLERS = ("cls", "cls_before_pooler", "mean", "first_last_avg", "last_two_avg")


def masked_mean(h_BLD, mask_BL):
  """Mean over the real tokens of each row (an all-padding row gives zeros, not NaN)."""
  m_BL1 = mask_BL[..., None].astype(jnp.float32)
  return jnp.sum(h_BLD.astype(jnp.float32) * m_BL1, -2) / jnp.maximum(m_BL1.sum(-2), 1.0)


def check_pooler(pooler: str, extra: tuple[str, ...] = ()) -> None:
  if pooler not in POOLERS + extra:
    raise ClowlabError(f"clowlab: unknown pooler {pooler!r}; valid: "
                       f"{', '.join(POOLERS + extra)}.")


def pool(out: enc.EncoderOutput, mask_BL, pooler: str, encoder_params=None):
  """Sentence vectors with a parameter-free pooler ('cls' uses the encoder's BERT pooler)."""
  if pooler == "cls_before_pooler":
    return out.cls_BD.astype(jnp.float32)
  if pooler == "cls":
    if encoder_params is None or "pooler" not in encoder_params:
      raise ClowlabError("clowlab: pooler 'cls' needs the encoder's pooler weights (BERT's "
                         "pooler dense layer); use 'cls_before_pooler' for the raw CLS vector.")
    return enc.pooler(encoder_params, out.cls_BD)
  if pooler == "mean":
    return masked_mean(out.last_BLD, mask_BL)
  if pooler == "first_last_avg":
    return (masked_mean(out.hidden_states_NBLD[1], mask_BL) + masked_mean(out.last_BLD, mask_BL)) / 2
  if pooler == "last_two_avg":
    return (masked_mean(out.hidden_states_NBLD[-2], mask_BL)
            + masked_mean(out.last_BLD, mask_BL)) / 2
  check_pooler(pooler)
  raise AssertionError(pooler)


LAYER_POOLERS = ("mean", "cls")


def check_layer(pooling: str, layer: int, num_outputs: int) -> int:
  """Checks a pool_layer request against an encoder with num_outputs = num_layers + 1 hidden
  states; returns the layer as a plain int."""
  if pooling not in LAYER_POOLERS:
    raise ClowlabError(f"clowlab: pooling {pooling!r} cannot be used with a layer; valid: "
                       f"{', '.join(LAYER_POOLERS)}.")
  n = num_outputs
  if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or not -n <= layer < n:
    raise ClowlabError(f"clowlab: layer {layer!r} is out of range; this encoder has {n - 1} "
                       f"layers, so valid layers are 0..{n - 1} (0 = embeddings) or -{n}..-1 "
                       "(-1 = last).")
  return int(layer)


def pool_layer(out: enc.EncoderOutput, mask_BL, pooling: str, layer: int):
  """One layer's sentence vectors: its masked mean ('mean') or raw CLS vector ('cls', no BERT
  pooler). `layer` indexes hidden_states_NBLD: 0 = embeddings, N = the last Transformer layer;
  negative counts from the end (-1 = last)."""
  layer = check_layer(pooling, layer, out.hidden_states_NBLD.shape[0])
  h_BLD = out.hidden_states_NBLD[layer]
  if pooling == "cls":
    return h_BLD[:, 0].astype(jnp.float32)
  return masked_mean(h_BLD, mask_BL)


# ---------------------------------------------------------------------------------------------
# Layer-wise attention pooling


def init_layer_attention(rng: jax.Array, hidden_size: int, std: float = 0.02):
  """Bias-free query/key/value maps D -> D (as LayerAttPooler's AttentionLayer)."""
  kq, kk, kv = jax.random.split(rng, 3)
  normal = lambda k: std * jax.random.truncated_normal(  # noqa: E731
      k, -2.0, 2.0, (hidden_size, hidden_size), jnp.float32)
  return {"query": {"kernel": normal(kq)}, "key": {"kernel": normal(kk)},
          "value": {"kernel": normal(kv)}}


def rrelu(x, rng, train: bool, lower: float = 1 / 8, upper: float = 1 / 3):
  """Randomized leaky ReLU (torch.nn.RReLU): negative slope ~ U(lower, upper) per element in
  training, (lower + upper) / 2 at evaluation."""
  if train:
    slope = jax.random.uniform(rng, x.shape, jnp.float32, lower, upper)
  else:
    slope = (lower + upper) / 2
  return jnp.where(x >= 0, x, x * slope)


def layer_attention(p, out: enc.EncoderOutput, mask_BL, rng=None, train: bool = False,
                    rrelu_range: tuple[float, float] = (1 / 8, 1 / 3)):
  """[last layer's CLS; attention over layers] (B, 2D), float32.

  For each of the N = num_layers + 1 outputs (embeddings and every Transformer layer) the query
  is its CLS vector and the key/value its masked mean, each through a bias-free dense layer and
  RReLU. Query i attends over the N keys (scores divided by N, as the authors' code does), and
  the N attended vectors are averaged. The result is concatenated to the last layer's CLS.
  """
  h_NBLD = out.hidden_states_NBLD
  N = h_NBLD.shape[0]
  src_BND = jnp.swapaxes(h_NBLD[:, :, 0], 0, 1).astype(jnp.float32)        # CLS per layer
  tgt_BND = jnp.swapaxes(masked_mean(h_NBLD, mask_BL[None]), 0, 1)           # mean per layer
  if train and rng is None:
    raise ValueError("layer_attention(train=True) needs an rng key (RReLU is random)")
  keys = jax.random.split(rng, 3) if train else (None,) * 3
  act = lambda x, k: rrelu(x, k, train, *rrelu_range)  # noqa: E731
  q_BND = act(src_BND @ p["query"]["kernel"], keys[0])
  k_BND = act(tgt_BND @ p["key"]["kernel"], keys[1])
  v_BND = act(tgt_BND @ p["value"]["kernel"], keys[2])
  w_BNN = jax.nn.softmax(jnp.einsum("bid,bjd->bij", q_BND, k_BND) / N, axis=-1)
  att_BD = jnp.mean(jnp.einsum("bij,bjd->bid", w_BNN, v_BND), axis=1)
  return jnp.concatenate([src_BND[:, -1], att_BD], axis=-1)
