"""Sentence poolers: shapes, padding never leaks into the vector, layer-wise attention equals an
independent NumPy transcription of the authors' AttentionLayer."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc
from clowlab.models import poolers

CFG = enc.EncoderConfig(vocab_size=30, hidden_size=8, num_layers=3, num_heads=2,
                        intermediate_size=16, max_position_embeddings=12)
IDS = np.array([[2, 5, 6, 7, 0, 0], [2, 9, 0, 0, 0, 0]], np.int32)
MASK = (IDS > 0).astype(np.int32)


def _encode(params, ids, mask):
  return enc.encode(params, ids, mask, cfg=CFG)


@pytest.fixture(scope="module")
def params():
  return enc.init_params(jax.random.key(0), CFG)


@pytest.mark.parametrize("pooler", poolers.POOLERS)
def test_shapes_and_padding_does_not_leak(params, pooler):
  out = _encode(params, IDS, MASK)
  x = poolers.pool(out, MASK, pooler, params)
  chex.assert_shape(x, (2, CFG.hidden_size))
  chex.assert_type(x, jnp.float32)
  # Different tokens at padded positions (masked out) must not change any pooled vector.
  ids2 = np.where(MASK > 0, IDS, 17)
  x2 = poolers.pool(_encode(params, ids2, MASK), MASK, pooler, params)
  chex.assert_trees_all_close(x, x2, rtol=1e-5, atol=1e-6)


def test_mean_poolers_by_hand(params):
  out = _encode(params, IDS, MASK)
  h = [np.asarray(x) for x in out.hidden_states_NBLD]
  np.testing.assert_allclose(poolers.pool(out, MASK, "mean")[1], h[-1][1, :2].mean(0), rtol=1e-5)
  np.testing.assert_allclose(poolers.pool(out, MASK, "first_last_avg")[0],
                             (h[1][0, :4].mean(0) + h[-1][0, :4].mean(0)) / 2, rtol=1e-5)
  np.testing.assert_allclose(poolers.pool(out, MASK, "last_two_avg")[0],
                             (h[-2][0, :4].mean(0) + h[-1][0, :4].mean(0)) / 2, rtol=1e-5)
  np.testing.assert_allclose(poolers.pool(out, MASK, "cls_before_pooler"), h[-1][:, 0],
                             rtol=1e-6)
  with pytest.raises(ClowlabError, match="unknown pooler 'max'; valid: cls"):
    poolers.check_pooler("max")
  with pytest.raises(ClowlabError, match="pooler weights"):
    poolers.pool(out, MASK, "cls", None)


def _reference_layer_attention(p, hidden, mask, slope):
  """The authors' AttentionLayer.forward (cl/models.py) in NumPy, evaluation mode."""
  rrelu = lambda x: np.where(x >= 0, x, x * slope)  # noqa: E731
  m = mask[..., None].astype(np.float64)
  src = [h[:, 0] for h in hidden]
  tgt = np.stack([(h * m).sum(1) / m.sum(1) for h in hidden], axis=1)  # B, N, D
  K = rrelu(tgt @ p["key"]["kernel"])
  V = rrelu(tgt @ p["value"]["kernel"])
  outs = []
  for s in src:
    Q = rrelu(s @ p["query"]["kernel"])
    score = np.einsum("bnd,bd->bn", K, Q) / len(hidden)
    w = np.exp(score - score.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    outs.append((V * w[..., None]).sum(1))
  return np.concatenate([src[-1], np.mean(outs, axis=0)], axis=1)


def test_layer_attention_matches_reference(params):
  head = poolers.init_layer_attention(jax.random.key(3), CFG.hidden_size, std=0.5)
  out = _encode(params, IDS, MASK)
  got = poolers.layer_attention(head, out, MASK)
  chex.assert_shape(got, (2, 2 * CFG.hidden_size))
  hidden = [np.asarray(h, np.float64) for h in out.hidden_states_NBLD]
  p64 = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), head)
  want = _reference_layer_attention(p64, hidden, MASK, (1 / 8 + 1 / 3) / 2)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  # Padding does not leak; training mode is random in RReLU's slopes but keyed (reproducible).
  ids2 = np.where(MASK > 0, IDS, 17)
  chex.assert_trees_all_close(poolers.layer_attention(head, _encode(params, ids2, MASK), MASK),
                              got, rtol=1e-5, atol=1e-6)
  a = poolers.layer_attention(head, out, MASK, jax.random.key(1), train=True)
  b = poolers.layer_attention(head, out, MASK, jax.random.key(1), train=True)
  c = poolers.layer_attention(head, out, MASK, jax.random.key(2), train=True)
  chex.assert_trees_all_equal(a, b)
  assert not np.allclose(a, c)


def test_rrelu_slopes():
  x = -jnp.ones((1000,))
  y = poolers.rrelu(x, jax.random.key(0), train=True)
  assert float(y.max()) <= -1 / 8 + 1e-6 and float(y.min()) >= -1 / 3 - 1e-6
  np.testing.assert_allclose(poolers.rrelu(x, None, train=False), -(1 / 8 + 1 / 3) / 2)
  np.testing.assert_array_equal(poolers.rrelu(jnp.arange(3.0), None, False), jnp.arange(3.0))
