"""BERT / RoBERTa / XLM-R Transformer encoder as pure functions over a params pytree.

    out = encode(params, input_ids_BL, attention_mask_BL, token_type_ids_BL, rng, train, cfg=cfg)

Params are a nested dict whose leaves are float32 arrays. The layer weights are stacked along a
leading axis of size `num_layers` and run with `jax.lax.scan`, so the compile time does not grow
with depth and one sharding rule covers every layer. Layout of the tree (see `param_shapes`):

    embeddings/{word, position, token_type}, embeddings/ln/{scale, bias}
    layers/attn/{q, k, v, o}/{kernel, bias}   kernel (L, D, D); x @ kernel (HF Linear weight.T)
    layers/attn_ln/{scale, bias}
    layers/mlp/wi/{kernel (L, D, F), bias}, layers/mlp/wo/{kernel (L, F, D), bias}
    layers/mlp_ln/{scale, bias}
    pooler/{kernel, bias}                      BERT's tanh pooler over CLS (kept for HF export)

Shape suffixes: B batch, L sequence, D hidden, H heads, K head dim, F intermediate, N layers+1.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from clowlab.errors import ClowlabError

Params = dict[str, Any]

ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # BERT's erf GELU
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Architecture of a BERT-family encoder; field names follow HF's config.json."""
  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  # RoBERTa / XLM-R number positions from pad_token_id + 1 and skip pads; BERT uses 0..L-1.
  position_offset: int = 0
  pad_token_id: int = 0
  layer_norm_eps: float = 1e-12
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  activation: str = "gelu"
  initializer_range: float = 0.02
  model_type: str = "bert"  # bert | roberta | xlm-roberta: only decides HF export naming.
  # Execution options (not part of the architecture).
  compute_dtype: str = "float32"  # "bfloat16": matmuls in bf16, params, LayerNorm, softmax in f32.
  remat: bool = False  # rematerialise each layer in the backward pass (saves activation memory).
  # True: one lax.scan over the stacked layers (compile time independent of depth; the TPU-pod
  # default). False: the same loop unrolled, which lets XLA skip the stacked per-layer residual
  # buffers and their copies: ~10-15 % faster train steps on CPU (docs/results.md).
  scan_layers: bool = True

  def __post_init__(self):
    # Types and ranges before arithmetic: a str or 0 here must not surface as a TypeError /
    # ZeroDivisionError, nor a float size as a jax shape error at the first jit.
    for name, least in (("vocab_size", 1), ("hidden_size", 1), ("num_layers", 1),
                        ("num_heads", 1), ("intermediate_size", 1),
                        ("max_position_embeddings", 1), ("type_vocab_size", 1),
                        ("position_offset", 0), ("pad_token_id", 0)):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ClowlabError(f"clowlab: encoder {name}={v!r} ({type(v).__name__}) must be an "
                           "integer. Set it to an integer.")
      if v < least:
        raise ClowlabError(f"clowlab: encoder {name}={v} must be "
                           f"{'positive' if least else 'non-negative'}. Set it to a valid value.")
    for name, lo, hi in (("layer_norm_eps", 0.0, math.inf), ("hidden_dropout", 0.0, 1.0),
                         ("attention_dropout", 0.0, 1.0), ("initializer_range", 0.0, math.inf)):
      v = getattr(self, name)
      if (isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)
          or not lo <= v < hi):
        raise ClowlabError(f"clowlab: encoder {name}={v!r} must be a finite number in "
                           f"[{lo}, {hi}). Set it to a valid value.")
    if self.hidden_size % self.num_heads:
      raise ClowlabError(
          f"clowlab: encoder hidden_size={self.hidden_size} is not divisible by "
          f"num_heads={self.num_heads}. Choose a head count that divides the hidden size.")
    if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
      raise ClowlabError(f"clowlab: unknown encoder activation {self.activation!r}; "
                         f"valid: {', '.join(sorted(ACTIVATIONS))}.")
    if not isinstance(self.compute_dtype, str) or self.compute_dtype not in DTYPES:
      raise ClowlabError(f"clowlab: unknown compute_dtype {self.compute_dtype!r}; "
                         f"valid: {', '.join(sorted(DTYPES))}.")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  def replace(self, **kw) -> EncoderConfig:
    return dataclasses.replace(self, **kw)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ClowlabError(f"clowlab: unknown encoder config keys {unknown}; valid: {sorted(known)}.")
    return cls(**d)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


class EncoderOutput(NamedTuple):
  hidden_states_NBLD: jax.Array  # embedding output + every layer's output (N = num_layers + 1)
  last_BLD: jax.Array            # == hidden_states_NBLD[-1]
  cls_BD: jax.Array              # == last_BLD[:, 0]


# ---------------------------------------------------------------------------------------------
# Initialisation


def param_shapes(cfg: EncoderConfig) -> Params:
  """The params tree as jax.ShapeDtypeStruct leaves (float32)."""
  D, F, N, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers, cfg.vocab_size
  s = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  dense = lambda i, o: {"kernel": s(N, i, o), "bias": s(N, o)}
  ln = lambda *lead: {"scale": s(*lead, D), "bias": s(*lead, D)}
  return {
      "embeddings": {
          "word": s(V, D), "position": s(cfg.max_position_embeddings, D),
          "token_type": s(cfg.type_vocab_size, D), "ln": ln(),
      },
      "layers": {
          "attn": {name: dense(D, D) for name in ("q", "k", "v", "o")},
          "attn_ln": ln(N),
          "mlp": {"wi": dense(D, F), "wo": dense(F, D)},
          "mlp_ln": ln(N),
      },
      "pooler": {"kernel": s(D, D), "bias": s(D)},
  }


def _init_leaf(path, leaf, key, std):
  name = jax.tree_util.keystr(path)
  if name.endswith("['scale']"):
    return jnp.ones(leaf.shape, leaf.dtype)
  if name.endswith("['bias']"):
    return jnp.zeros(leaf.shape, leaf.dtype)
  return std * jax.random.truncated_normal(key, -2.0, 2.0, leaf.shape, leaf.dtype)


def init_params(rng: jax.Array, cfg: EncoderConfig) -> Params:
  """BERT initialisation: N(0, 0.02) truncated at 2 sigma, LayerNorm 1/0, biases 0."""
  shapes = param_shapes(cfg)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  keys = jax.random.split(rng, len(leaves))
  params = treedef.unflatten(
      [_init_leaf(p, l, k, cfg.initializer_range) for (p, l), k in zip(leaves, keys)])
  # HF zeroes the padding row of the word (and, for RoBERTa, position) embeddings.
  params["embeddings"]["word"] = params["embeddings"]["word"].at[cfg.pad_token_id].set(0.0)
  if cfg.position_offset:
    params["embeddings"]["position"] = params["embeddings"]["position"].at[cfg.pad_token_id].set(0.0)
  return params


# ---------------------------------------------------------------------------------------------
# Forward


def layer_norm(x, p, eps):
  """LayerNorm in float32 whatever the compute dtype (its statistics need the precision)."""
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.square(x32 - mean).mean(-1, keepdims=True)
  y = (x32 - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]
  return y.astype(x.dtype)


def dense(x, p, dtype):
  return x @ p["kernel"].astype(dtype) + p["bias"].astype(dtype)


def _fmix32(x):
  """murmur3's 32-bit finaliser: a bijection with full avalanche."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def random_bits(rng, shape) -> jax.Array:
  """uint32 per element, a pure function of (rng, element index).

  One threefry draw seeds a counter hash of each element's index. On XLA:CPU threefry costs
  ~10 ns per element (the largest overhead of a dropout-heavy step, ../shared/PERF_NOTES.md);
  the hash is ~20x cheaper and fuses into the surrounding elementwise ops. The leading axis and
  the rest are hashed separately so arrays beyond 2**32 elements do not repeat masks.
  """
  s = jax.random.bits(rng, (2,), jnp.uint32)
  if not shape:
    return _fmix32(s[0] ^ s[1])
  lead = jax.lax.broadcasted_iota(jnp.uint32, shape, 0)
  rest, stride = jnp.zeros(shape, jnp.uint32), 1
  for d in range(len(shape) - 1, 0, -1):
    rest = rest + jax.lax.broadcasted_iota(jnp.uint32, shape, d) * jnp.uint32(stride)
    stride *= shape[d]
  return _fmix32(_fmix32(lead ^ s[0]) + rest ^ s[1])


def dropout(x, rate, rng, train):
  if not train or rate == 0.0:
    return x
  threshold = jnp.uint32(min(round(rate * 2.0**32), 2**32 - 1))
  keep = random_bits(rng, x.shape) >= threshold  # P(keep) = 1 - rate
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def position_ids(input_ids_BL, cfg: EncoderConfig, positions_BL=None):
  """BERT: 0..L-1. RoBERTa/XLM-R: pad + 1 + index among non-pad tokens, pad for pads (as HF).

  positions_BL: explicit 0-based positions (e.g. TLM's restart at the target sentence), shifted
  by the family's offset.
  """
  B, L = input_ids_BL.shape
  if positions_BL is not None:
    return positions_BL + (cfg.pad_token_id + 1 if cfg.position_offset else 0)
  if not cfg.position_offset:
    return jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (B, L))
  not_pad = (input_ids_BL != cfg.pad_token_id).astype(jnp.int32)
  return jnp.cumsum(not_pad, axis=1) * not_pad + cfg.pad_token_id


def embed(params, input_ids_BL, token_type_ids_BL, rng, train, cfg: EncoderConfig,
          positions_BL=None):
  e = params["embeddings"]
  x_BLD = (jnp.take(e["word"], input_ids_BL, axis=0)
           + jnp.take(e["position"], position_ids(input_ids_BL, cfg, positions_BL), axis=0)
           + jnp.take(e["token_type"], token_type_ids_BL, axis=0))
  x_BLD = layer_norm(x_BLD, e["ln"], cfg.layer_norm_eps)
  return dropout(x_BLD, cfg.hidden_dropout, rng, train).astype(DTYPES[cfg.compute_dtype])


def attention(x_BLD, p, bias_B11L, rng, train, cfg: EncoderConfig):
  dt = x_BLD.dtype
  B, L, _ = x_BLD.shape
  split = lambda t: t.reshape(B, L, cfg.num_heads, cfg.head_dim)
  q_BLHK = split(dense(x_BLD, p["q"], dt))
  k_BLHK = split(dense(x_BLD, p["k"], dt))
  v_BLHK = split(dense(x_BLD, p["v"], dt))
  # Scores and softmax in float32: bf16 logits lose too much for long sequences.
  s_BHLL = jnp.einsum("blhk,bmhk->bhlm", q_BLHK, k_BLHK,
                      preferred_element_type=jnp.float32) / math.sqrt(cfg.head_dim)
  probs_BHLL = jax.nn.softmax(s_BHLL + bias_B11L, axis=-1).astype(dt)
  probs_BHLL = dropout(probs_BHLL, cfg.attention_dropout, rng, train)
  o_BLHK = jnp.einsum("bhlm,bmhk->blhk", probs_BHLL, v_BLHK)
  return dense(o_BLHK.reshape(B, L, cfg.hidden_size), p["o"], dt)


def layer(x_BLD, p, bias_B11L, rng, train, cfg: EncoderConfig):
  """One post-LN Transformer layer (BERT): x = LN(x + attn(x)); x = LN(x + mlp(x))."""
  dt = x_BLD.dtype
  r_attn, r_h1, r_h2 = jax.random.split(rng, 3)
  a_BLD = attention(x_BLD, p["attn"], bias_B11L, r_attn, train, cfg)
  x_BLD = layer_norm(x_BLD + dropout(a_BLD, cfg.hidden_dropout, r_h1, train), p["attn_ln"],
                     cfg.layer_norm_eps)
  h_BLF = ACTIVATIONS[cfg.activation](dense(x_BLD, p["mlp"]["wi"], dt))
  m_BLD = dense(h_BLF, p["mlp"]["wo"], dt)
  return layer_norm(x_BLD + dropout(m_BLD, cfg.hidden_dropout, r_h2, train), p["mlp_ln"],
                    cfg.layer_norm_eps)


def encode(params: Params, input_ids_BL, attention_mask_BL=None, token_type_ids_BL=None,
           rng: jax.Array | None = None, train: bool = False, *,
           cfg: EncoderConfig, positions_BL=None) -> EncoderOutput:
  """Runs the encoder. `rng` is needed only when `train` and dropout is on; `positions_BL`
  (0-based) replaces the default position numbering."""
  if attention_mask_BL is None:
    attention_mask_BL = jnp.ones_like(input_ids_BL)
  if token_type_ids_BL is None:
    token_type_ids_BL = jnp.zeros_like(input_ids_BL)
  if rng is None:
    if train and (cfg.hidden_dropout or cfg.attention_dropout):
      raise ValueError("encode(train=True) with dropout needs an rng key")
    rng = jax.random.key(0)
  r_emb, r_layers = jax.random.split(rng)
  x_BLD = embed(params, input_ids_BL, token_type_ids_BL, r_emb, train, cfg, positions_BL)
  # Additive mask: a large finite negative keeps fully padded rows NaN-free.
  bias_B11L = jnp.where(attention_mask_BL[:, None, None, :] > 0, 0.0,
                        jnp.finfo(jnp.float32).min).astype(jnp.float32)

  def step(x_BLD, p_and_key):
    p, key = p_and_key
    y_BLD = layer(x_BLD, p, bias_B11L, key, train, cfg)
    return y_BLD, y_BLD

  if cfg.remat:
    step = jax.checkpoint(step, prevent_cse=False)
  layer_keys = jax.random.split(r_layers, cfg.num_layers)
  last_BLD, ys_NBLD = jax.lax.scan(step, x_BLD, (params["layers"], layer_keys),
                                   unroll=1 if cfg.scan_layers else True)
  hidden_NBLD = jnp.concatenate([x_BLD[None], ys_NBLD], axis=0)
  return EncoderOutput(hidden_NBLD, last_BLD, last_BLD[:, 0])


def truncate(params: Params, cfg: EncoderConfig, num_layers: int) -> tuple[Params, EncoderConfig]:
  """The encoder cut after its first `num_layers` layers (when only a lower layer's output is
  needed, the layers above it need not run); unchanged if num_layers is not below the depth."""
  if not 1 <= num_layers < cfg.num_layers:
    return params, cfg
  layers = jax.tree_util.tree_map(lambda x: x[:num_layers], params["layers"])
  return {**params, "layers": layers}, cfg.replace(num_layers=num_layers)


def pooler(params: Params, cls_BD):
  """BERT's pooler: tanh(dense(CLS)); what HF `BertModel(...).pooler_output` returns."""
  return jnp.tanh(dense(cls_BD.astype(jnp.float32), params["pooler"], jnp.float32))
