"""InfoNCE over the global batch: exact values, the three implementations agree (loss and
gradients), sharded runs equal the single-device computation, memory stays bounded."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from clowlab.errors import ClowlabError
from clowlab.losses import contrastive as C

AXES = ("data", "fsdp")
TOL = dict(rtol=1e-5, atol=1e-6)


def _data(B=16, D=8, seed=0):
  rng = np.random.default_rng(seed)
  q, k, hn = (jnp.asarray(rng.normal(size=(B, D)), jnp.float32) for _ in range(3))
  valid = rng.random(B) > 0.25
  valid[0] = True
  return q, k, hn, jnp.asarray(valid)


def _reference(q, k, *, temperature, symmetric=False, hard_negatives_BD=None,
               label_smoothing=0.0, normalize=True, valid_B=None, hard_negative_weight=0.0):
  """Independent formulation: drop invalid rows, then plain optax cross-entropy."""
  idx = None if valid_B is None else np.flatnonzero(np.asarray(valid_B))
  return _reference_jit(q, k, hard_negatives_BD, idx, temperature=temperature,
                        symmetric=symmetric, label_smoothing=label_smoothing,
                        normalize=normalize, hard_negative_weight=hard_negative_weight)


@functools.partial(jax.jit, static_argnames=("temperature", "symmetric", "label_smoothing",
                                             "normalize", "hard_negative_weight"))
def _reference_jit(q, k, hn, idx, *, temperature, symmetric, label_smoothing, normalize,
                   hard_negative_weight):
  if idx is not None:
    q, k = q[idx], k[idx]
    hn = None if hn is None else hn[idx]
  if normalize:
    norm = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    q, k = norm(q), norm(k)
    hn = None if hn is None else norm(hn)
  cands = k if hn is None else jnp.concatenate([k, hn])
  logits = q @ cands.T / temperature
  n = q.shape[0]
  if hn is not None:  # SimCSE: the weight is added to each row's own hard-negative logit
    logits = logits.at[:, n:].add(hard_negative_weight * jnp.eye(n))

  def ce(lg):
    labels = optax.smooth_labels(jnp.eye(lg.shape[0], lg.shape[1]), label_smoothing)
    return optax.softmax_cross_entropy(lg, labels).mean()

  loss = ce(logits)
  if symmetric:
    loss = 0.5 * (loss + ce(logits[:, :n].T))
  return loss


def _loss_and_grads(fn, q, k, hn=None, **kw):
  def f(q, k, hn):
    return fn(q, k, hard_negatives_BD=hn, **kw)[0]
  argnums = (0, 1) if hn is None else (0, 1, 2)
  return jax.value_and_grad(f, argnums=argnums)(q, k, hn)


# ------------------------------------------------------------------------------ exact values

class ExactValuesTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_computed_two_rows(self):
    # B=2, no normalisation: logits = q @ k.T / t, CE with labels [0, 1] by numpy log-softmax.
    q = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
    k = np.array([[0.8, 0.2], [0.0, 1.0]], np.float32)
    t = 0.5
    logits = q @ k.T / t  # [[1.6, 0.0], [1.0, 1.0]]
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -(logp[0, 0] + logp[1, 1]) / 2
    logp_c = logits - np.log(np.exp(logits).sum(0, keepdims=True))
    expected_sym = 0.5 * expected - 0.25 * (logp_c[0, 0] + logp_c[1, 1])

    @self.variant
    def both(q, k):
      return (C.info_nce(q, k, temperature=t, normalize=False),
              C.info_nce(q, k, temperature=t, normalize=False, symmetric=True)[0])

    (loss, m), sym = both(jnp.asarray(q), jnp.asarray(k))
    chex.assert_shape((loss, sym), ())
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(loss, 0.5 * (np.log1p(np.exp(-1.6)) + np.log(2.0)), rtol=1e-6)
    np.testing.assert_allclose(sym, expected_sym, rtol=1e-6)
    # Row 0 is top-1; row 1 ties (1.0 vs 1.0), which counts as correct.
    np.testing.assert_allclose(m["accuracy"], 1.0)
    np.testing.assert_allclose(m["pos_sim"], (0.8 + 0.5) / 2, rtol=1e-6)
    np.testing.assert_allclose(m["neg_sim"], (0.0 + 0.5) / 2, rtol=1e-6)
    np.testing.assert_allclose(m["num_valid"], 2.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_perfect_pairs_metrics(self):
    q = jnp.eye(4, 8) * 3.0
    loss, m = self.variant(functools.partial(C.info_nce, temperature=0.5))(q, q)
    chex.assert_shape(loss, ())
    chex.assert_trees_all_equal_shapes(m, {k: loss for k in m})
    np.testing.assert_allclose(m["accuracy"], 1.0)
    np.testing.assert_allclose(m["pos_sim"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(m["neg_sim"], 0.0, atol=1e-7)
    np.testing.assert_allclose(loss, np.log1p(3 * np.exp(-2.0)), rtol=1e-6)


@pytest.mark.parametrize("opts", [
    dict(symmetric=True, temperature=0.3),
    dict(hard=True),
    dict(hard=True, hard_negative_weight=1.0),
    dict(label_smoothing=0.1),
    dict(masked=True),
    dict(normalize=False, temperature=3.0),
    dict(symmetric=True, hard=True, label_smoothing=0.2, masked=True, hard_negative_weight=0.5),
], ids=["symmetric", "hard_negatives", "hard_negative_weight", "label_smoothing", "valid_mask",
        "no_normalize", "everything"])
def test_matches_reference(opts):
  opts = dict(opts)
  q, k, hn, valid = _data()
  hard, masked = opts.pop("hard", False), opts.pop("masked", False)
  kw = {"temperature": 0.07, **opts}
  if masked:
    kw["valid_B"] = valid
  hn_arg = hn if hard else None

  loss, grads = jax.jit(functools.partial(_loss_and_grads, C.info_nce, **kw))(q, k, hn_arg)
  ref_loss, ref_grads = jax.jit(functools.partial(_loss_and_grads, _reference_tuple, **kw))(
      q, k, hn_arg)
  chex.assert_shape(loss, ())
  chex.assert_trees_all_close(loss, ref_loss, **TOL)
  chex.assert_trees_all_close(grads, ref_grads, **TOL)
  if masked:  # masking a row equals removing it; it gets no gradient, as query or key
    invalid = ~np.asarray(valid)
    for g in grads:
      np.testing.assert_array_equal(np.asarray(g)[invalid], 0.0)


def _reference_tuple(q, k, **kw):
  return _reference(q, k, **kw), None


# ------------------------------------------------------------------------------ chunked

@pytest.mark.parametrize("chunk_sizes,opts", [
    ((5, 8), dict(symmetric=True, hard=True, label_smoothing=0.1, masked=True,
                  hard_negative_weight=0.7)),  # 5: padded
    ((64,), dict()),  # one chunk
])
def test_chunked_equals_plain(chunk_sizes, opts):
  opts = dict(opts)
  q, k, hn, valid = _data(B=16)
  hn_arg = hn if opts.pop("hard", False) else None
  if opts.pop("masked", False):
    opts["valid_B"] = valid

  def run(fn, **extra):
    def f(q, k, hn, t):
      return fn(q, k, temperature=t, hard_negatives_BD=hn, **opts, **extra)
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3), has_aux=True))(
        q, k, hn_arg, jnp.float32(0.07))

  (loss_p, m_p), g_p = run(C.info_nce)
  for chunk_size in chunk_sizes:
    (loss_c, m_c), g_c = run(C.info_nce_chunked, chunk_size=chunk_size)
    chex.assert_trees_all_close((loss_c, g_c), (loss_p, g_p), **TOL)  # incl. d/d temperature
    chex.assert_trees_all_close(m_c, m_p, **TOL)


def test_chunked_memory_is_bounded():
  # Compile only: the plain loss materialises B x B logits (and more in backward); chunks
  # of 256 rows need a small fraction of that.
  B, D = 4096, 64
  s = jax.ShapeDtypeStruct((B, D), jnp.float32)

  def temp_bytes(fn):
    f = jax.jit(jax.grad(lambda q, k: fn(q, k, temperature=0.05, symmetric=True)[0], (0, 1)))
    return f.lower(s, s).compile().memory_analysis().temp_size_in_bytes

  plain = temp_bytes(C.info_nce)
  chunked = temp_bytes(functools.partial(C.info_nce_chunked, chunk_size=256))
  assert plain >= B * B * 4
  assert chunked < B * B * 4 / 4, (plain, chunked)


# ------------------------------------------------------------------------------ sharded

def _mesh(axis_type):
  return jax.make_mesh((4, 2), AXES, axis_types=(axis_type,) * 2)


def _shard(mesh, *xs):
  return [jax.device_put(x, NamedSharding(mesh, P(AXES, *([None] * (x.ndim - 1)))))
          for x in xs]


@pytest.mark.parametrize("axis_type,opts", [
    (AxisType.Explicit, dict(symmetric=True, hard=True, label_smoothing=0.1, masked=True,
                             hard_negative_weight=1.0)),
    (AxisType.Auto, dict(symmetric=True, hard=True, label_smoothing=0.1, masked=True)),
])
def test_sharded_equals_single_device(axis_type, opts):
  opts = dict(opts)
  B = 32
  q, k, hn, valid = _data(B=B, D=16, seed=1)
  hard = opts.pop("hard", False)
  masked = opts.pop("masked", False)
  kw = dict(temperature=0.05, **opts)

  def grads_fn(fn, **extra):
    def f(q, k, hn, valid):
      loss, m = fn(q, k, hard_negatives_BD=hn if hard else None,
                   valid_B=valid if masked else None, **kw, **extra)
      return loss, m
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))

  (ref_loss, ref_m), ref_g = grads_fn(C.info_nce)(q, k, hn, valid)  # one device, unsharded

  mesh = _mesh(axis_type)
  with jax.set_mesh(mesh):
    args = _shard(mesh, q, k, hn, valid)
    variants = [(C.info_nce, {}), (C.info_nce_sharded, dict(axis_names=AXES))]
    if axis_type == AxisType.Explicit:  # the strided-chunk resharding path
      variants.append((C.info_nce_chunked, dict(chunk_size=8)))
    for fn, extra in variants:
      (loss, m), g = grads_fn(fn, **extra)(*args)
      chex.assert_trees_all_close((loss, m), (ref_loss, ref_m), **TOL)
      chex.assert_trees_all_close(g, ref_g, **TOL)
      # Key gradients stay with the device that owns the key.
      assert g[1].sharding.is_equivalent_to(args[1].sharding, 2), (fn, g[1].sharding)


def test_sharded_single_axis_replicates_the_other():
  # Batch over "data" only: "fsdp" replicas compute the same rows.
  q, k, _, _ = _data(B=16, D=8, seed=2)
  ref = C.info_nce(q, k, temperature=0.1, symmetric=True)[0]
  mesh = _mesh(AxisType.Explicit)
  out = jax.jit(lambda q, k: C.info_nce_sharded(q, k, temperature=0.1, symmetric=True,
                                                axis_names="data", mesh=mesh)[0])(q, k)
  chex.assert_trees_all_close(out, ref, **TOL)


def _train_step_sharded(mesh, lr):
  """One data-parallel SGD step on a linear "encoder" W, written as a shard_map."""
  @jax.jit
  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(), P(AXES), P(AXES)),
                     out_specs=(P(), P()))
  def step(W, xq_bI, xk_bI):
    def loss_fn(W):
      return C.info_nce_per_shard(xq_bI @ W, xk_bI @ W, axis_names=AXES, temperature=0.1,
                                  symmetric=True)[0]
    # W is replicated (P()): its gradient is summed over devices by the transpose of the
    # implicit broadcast, so every replica takes the same, global step.
    loss, g = jax.value_and_grad(loss_fn)(W)
    return loss, W - lr * g
  return step


def test_data_parallel_sgd_step_matches_single_device():
  rng = np.random.default_rng(3)
  B, I, D, lr = 32, 12, 6, 0.5
  W = jnp.asarray(rng.normal(size=(I, D)), jnp.float32)
  xq, xk = (jnp.asarray(rng.normal(size=(B, I)), jnp.float32) for _ in range(2))

  def loss_fn(W, xq, xk):
    return C.info_nce(xq @ W, xk @ W, temperature=0.1, symmetric=True)[0]

  ref_loss, ref_g = jax.jit(jax.value_and_grad(loss_fn))(W, xq, xk)
  ref_W = W - lr * ref_g

  mesh = _mesh(AxisType.Explicit)
  with jax.set_mesh(mesh):
    xq_s, xk_s = _shard(mesh, xq, xk)
    W_s = jax.device_put(W, NamedSharding(mesh, P()))
    loss, new_W = _train_step_sharded(mesh, lr)(W_s, xq_s, xk_s)
    chex.assert_trees_all_close((loss, new_W), (ref_loss, ref_W), **TOL)
    # Same step via jit on global arrays with sharded inputs.
    loss_j, g_j = jax.jit(jax.value_and_grad(loss_fn))(W_s, xq_s, xk_s)
    chex.assert_trees_all_close((loss_j, g_j), (ref_loss, ref_g), **TOL)

    # Negative control: a replica's own gradient (no cross-replica sum) is not the global
    # one, so the comparison above would catch a missing gradient reduction.
    @jax.jit
    @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(), P(AXES), P(AXES)),
                       out_specs=P(AXES))
    def local_grads(W, xq_bI, xk_bI):
      W_local = jax.lax.pcast(W, AXES, to="varying")  # per-replica copy: its gradient is not summed
      g = jax.grad(lambda W: C.info_nce_per_shard(
          xq_bI @ W, xk_bI @ W, axis_names=AXES, temperature=0.1, symmetric=True)[0])(W_local)
      return g[None]
    per_replica = np.asarray(local_grads(W_s, xq_s, xk_s))
  chex.assert_trees_all_close(per_replica.sum(0), ref_g, **TOL)
  assert not np.allclose(per_replica[0], ref_g, rtol=1e-3)


# ------------------------------------------------------------------------------ errors

def test_user_errors():
  q = jnp.ones((8, 4))
  with pytest.raises(ClowlabError, match="equal shapes"):
    C.info_nce(q, jnp.ones((8, 3)), temperature=0.1)
  with pytest.raises(ClowlabError, match="temperature"):
    C.info_nce(q, q, temperature=0.0)
  with pytest.raises(ClowlabError, match="label_smoothing"):
    C.info_nce(q, q, temperature=0.1, label_smoothing=1.0)
  with pytest.raises(ClowlabError, match="hard_negatives"):
    C.info_nce(q, q, temperature=0.1, hard_negatives_BD=jnp.ones((4, 4)))
  with pytest.raises(ClowlabError, match="chunk_size"):
    C.info_nce_chunked(q, q, temperature=0.1, chunk_size=0)
  with pytest.raises(ClowlabError, match="no mesh"):
    C.info_nce_sharded(q, q, temperature=0.1)
  mesh = _mesh(AxisType.Explicit)
  with pytest.raises(ClowlabError, match="not divisible"):
    C.info_nce_sharded(jnp.ones((12, 4)), jnp.ones((12, 4)), temperature=0.1, mesh=mesh,
                       axis_names=AXES)
  with pytest.raises(ClowlabError, match="not in the mesh"):
    C.info_nce_sharded(q, q, temperature=0.1, mesh=mesh, axis_names=("batch",))
