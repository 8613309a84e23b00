"""Encoder: shapes, options (bf16, remat, dropout) and position ids on a tiny config."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc
from clowlab.models import heads

TINY = enc.EncoderConfig(vocab_size=97, hidden_size=32, num_layers=3, num_heads=4,
                         intermediate_size=64, max_position_embeddings=40, hidden_dropout=0.1,
                         attention_dropout=0.1)


def _batch(B=3, L=11, vocab=97, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, vocab, size=(B, L)).astype(np.int32)
  lengths = np.array([L, L - 4, 3][:B])
  mask = (np.arange(L)[None] < lengths[:, None]).astype(np.int32)
  ids = np.where(mask > 0, ids, 0)
  return jnp.asarray(ids), jnp.asarray(mask), jnp.zeros_like(jnp.asarray(ids))


class EncoderTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_shapes(self):
    params = enc.init_params(jax.random.key(0), TINY)
    ids, mask, tt = _batch()
    out = self.variant(lambda p, i, m, t: enc.encode(p, i, m, t, cfg=TINY))(params, ids, mask, tt)
    chex.assert_shape(out.hidden_states_NBLD, (TINY.num_layers + 1, 3, 11, 32))
    chex.assert_shape(out.last_BLD, (3, 11, 32))
    chex.assert_shape(out.cls_BD, (3, 32))
    chex.assert_trees_all_close(out.hidden_states_NBLD[-1], out.last_BLD)
    chex.assert_trees_all_close(out.last_BLD[:, 0], out.cls_BD)
    chex.assert_tree_all_finite(out)

  def test_padding_does_not_change_real_tokens(self):
    params = enc.init_params(jax.random.key(1), TINY)
    ids, mask, tt = _batch()
    full = enc.encode(params, ids, mask, tt, cfg=TINY).last_BLD
    short = enc.encode(params, ids[:, :7], mask[:, :7], tt[:, :7], cfg=TINY).last_BLD
    # Row 1 has 7 real tokens: extra padding must not change them.
    chex.assert_trees_all_close(full[1, :7], short[1, :7], atol=1e-5)

  def test_remat_matches(self):
    params = enc.init_params(jax.random.key(2), TINY)
    ids, mask, tt = _batch()
    rng = jax.random.key(3)

    def loss(p, cfg):
      return jnp.sum(enc.encode(p, ids, mask, tt, rng, True, cfg=cfg).last_BLD ** 2)

    g1 = jax.grad(loss)(params, TINY)
    g2 = jax.grad(loss)(params, TINY.replace(remat=True))
    # Same math, different fusion: equal up to float32 rounding.
    chex.assert_trees_all_close(g1, g2, rtol=1e-4, atol=1e-4)

  def test_dropout_is_keyed(self):
    params = enc.init_params(jax.random.key(4), TINY)
    ids, mask, tt = _batch()
    run = lambda k, train: enc.encode(params, ids, mask, tt, jax.random.key(k), train, cfg=TINY)
    chex.assert_trees_all_equal(run(5, True).last_BLD, run(5, True).last_BLD)
    self.assertFalse(np.allclose(run(5, True).last_BLD, run(6, True).last_BLD))
    chex.assert_trees_all_equal(run(5, False).last_BLD, run(6, False).last_BLD)
    with self.assertRaises(ValueError):
      enc.encode(params, ids, mask, tt, None, True, cfg=TINY)

  def test_bf16_compute_close_to_f32(self):
    params = enc.init_params(jax.random.key(7), TINY)
    ids, mask, tt = _batch()
    f32 = enc.encode(params, ids, mask, tt, cfg=TINY).last_BLD
    bf16 = enc.encode(params, ids, mask, tt, cfg=TINY.replace(compute_dtype="bfloat16")).last_BLD
    self.assertEqual(bf16.dtype, jnp.bfloat16)
    self.assertEqual(jax.tree_util.tree_leaves(params)[0].dtype, jnp.float32)
    np.testing.assert_allclose(np.asarray(bf16, np.float32), f32, atol=0.1)

  def test_roberta_position_ids(self):
    cfg = TINY.replace(position_offset=2, pad_token_id=1)
    ids = jnp.array([[0, 7, 8, 2, 1, 1], [0, 9, 2, 1, 1, 1]])
    chex.assert_trees_all_equal(enc.position_ids(ids, cfg),
                                jnp.array([[2, 3, 4, 5, 1, 1], [2, 3, 4, 1, 1, 1]]))
    chex.assert_trees_all_equal(enc.position_ids(ids, TINY)[0], jnp.arange(6))

  def test_mlm_head_and_projection_shapes(self):
    params = enc.init_params(jax.random.key(8), TINY)
    head = heads.init_mlm_head(jax.random.key(9), TINY)
    ids, mask, tt = _batch()
    out = enc.encode(params, ids, mask, tt, cfg=TINY)
    logits = heads.mlm_logits(head, params["embeddings"]["word"], out.last_BLD, TINY)
    chex.assert_shape(logits, (3, 11, TINY.vocab_size))
    self.assertEqual(logits.dtype, jnp.float32)
    proj = heads.init_projection(jax.random.key(10), (32, 64, 16))
    chex.assert_shape(heads.projection(proj, out.cls_BD, "relu"), (3, 16))

  def test_bad_config_errors(self):
    with pytest.raises(ClowlabError, match="not divisible by num_heads"):
      TINY.replace(num_heads=5)
    with pytest.raises(ClowlabError, match="unknown encoder activation 'swish2'"):
      TINY.replace(activation="swish2")
    with pytest.raises(ClowlabError, match="unknown encoder config keys"):
      enc.EncoderConfig.from_dict({"hidden": 3})


def test_dropout_masks_rate_and_independence():
  x = jnp.ones((256, 64, 64))
  y1 = enc.dropout(x, 0.1, jax.random.key(0), True)
  y2 = enc.dropout(x, 0.1, jax.random.key(1), True)
  m1, m2 = np.asarray(y1 == 0), np.asarray(y2 == 0)
  assert abs(m1.mean() - 0.1) < 0.005
  np.testing.assert_allclose(np.asarray(y1).mean(), 1.0, atol=0.01)  # expectation preserved
  assert abs(np.corrcoef(m1.ravel(), m2.ravel())[0, 1]) < 0.01  # different keys: independent
  assert abs(np.corrcoef(m1[:, :, :-1].ravel(), m1[:, :, 1:].ravel())[0, 1]) < 0.01
  assert abs(np.corrcoef(m1[:-1].ravel(), m1[1:].ravel())[0, 1]) < 0.01
  chex.assert_trees_all_equal(y1, enc.dropout(x, 0.1, jax.random.key(0), True))
  assert float(jnp.mean(enc.dropout(x, 0.5, jax.random.key(2), True) == 0)) == pytest.approx(
      0.5, abs=0.005)
