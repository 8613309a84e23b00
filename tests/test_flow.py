"""The Glow flow (models/flow.py) and BERT-whitening (methods/whitening.py)."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clowlab.errors import ClowlabError
from clowlab.methods import whitening
from clowlab.models import flow

VARIANTS = [(c, p) for c in flow.COUPLINGS for p in flow.PERMUTATIONS]
forward, inverse, data_init, bits_per_dim = (flow.forward, flow.inverse, flow.data_init,
                                             flow.bits_per_dim)


def _flow(coupling, permutation, dim=12, levels=3, depth=2, seed=0):
  """A flow after data-dependent init, with its zero-initialised layers perturbed so every
  coupling is a non-trivial map (at init they are the identity)."""
  fcfg = flow.FlowConfig(dim=dim, levels=levels, depth=depth, coupling=coupling,
                         permutation=permutation, width=8)
  params, const = flow.init(jax.random.key(seed), fcfg)
  x = 3.0 * jax.random.normal(jax.random.key(seed + 1), (64, dim)) + 1.0
  params = data_init(params, const, x, fcfg)
  leaves, tree = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(jax.random.key(seed + 2), len(leaves))
  params = jax.tree_util.tree_unflatten(tree, [
      v + 0.1 * jax.random.normal(k, v.shape) if "'out'" in jax.tree_util.keystr(path) else v
      for (path, v), k in zip(leaves, keys)])
  return fcfg, params, const, x


@pytest.mark.parametrize("coupling,permutation", VARIANTS)
def test_inverse_of_forward_is_identity(coupling, permutation):
  fcfg, params, const, x = _flow(coupling, permutation)
  z, _ = forward(params, const, x, fcfg)
  chex.assert_shape(z, x.shape)
  assert float(jnp.abs(z - x).max()) > 0.1  # the flow is not the identity
  chex.assert_trees_all_close(inverse(params, const, z, fcfg), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("coupling,permutation", VARIANTS)
def test_log_determinant_equals_slogdet_of_the_jacobian(coupling, permutation):
  fcfg, params, const, x = _flow(coupling, permutation, dim=8, levels=2)
  _, logdet = forward(params, const, x[:4], fcfg)
  jac = jax.jit(jax.vmap(jax.jacfwd(lambda v: forward(params, const, v[None], fcfg)[0][0])))
  sign, brute = jnp.linalg.slogdet(jac(x[:4]))
  assert np.all(np.asarray(sign) != 0)
  np.testing.assert_allclose(np.asarray(logdet), np.asarray(brute), atol=2e-4, rtol=1e-5)


def test_bits_per_dim_is_the_negative_log_likelihood():
  fcfg, params, const, x = _flow("affine", "lu")
  z, logdet = forward(params, const, x, fcfg)
  log_pz = jax.scipy.stats.norm.logpdf(z).sum(-1)
  want = -(log_pz + logdet) / (fcfg.dim * math.log(2))
  chex.assert_trees_all_close(bits_per_dim(params, const, x, fcfg), want, rtol=1e-5)


def test_a_fresh_flow_is_a_permutation_and_data_init_standardises_the_first_batch():
  fcfg = flow.FlowConfig(dim=16, levels=3, depth=3)
  params, const = flow.init(jax.random.key(0), fcfg)
  x = 5.0 * jax.random.normal(jax.random.key(1), (256, 16)) - 2.0
  z, logdet = forward(params, const, x, fcfg)
  # ActNorm at zero, couplings zero-initialised: only the (reverse) permutations act.
  chex.assert_trees_all_close(jnp.sort(z, -1), jnp.sort(x, -1))
  chex.assert_trees_all_close(logdet, jnp.zeros(256))
  params = data_init(params, const, x, fcfg)
  z, _ = forward(params, const, x, fcfg)
  chex.assert_trees_all_close(z.mean(0), jnp.zeros(16), atol=1e-4)
  chex.assert_trees_all_close(z.std(0), jnp.ones(16), atol=1e-3)
  first = params["level_0"]["step_0"]["actnorm"]
  chex.assert_trees_all_close(first["bias"], -x.mean(0), rtol=1e-5)


def test_flow_config_errors_name_the_key():
  with pytest.raises(ClowlabError, match="flow.coupling"):
    flow.FlowConfig(dim=8, coupling="spline")
  with pytest.raises(ClowlabError, match="flow.permutation"):
    flow.FlowConfig(dim=8, permutation="random")
  with pytest.raises(ClowlabError, match="fewer flow.levels"):
    flow.FlowConfig(dim=4, levels=4)


def test_whitening_gives_zero_mean_identity_covariance():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2000, 6)) @ rng.normal(size=(6, 6)) + 3.0
  w = whitening.fit(x)
  y = whitening.apply(w, x)
  np.testing.assert_allclose(y.mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(6), atol=1e-3)
  y3 = whitening.apply(w, x, k=3)
  chex.assert_shape(y3, (2000, 3))
  # Columns come in decreasing variance of x: |column i| = 1 / sqrt(variance_i) grows.
  norms = np.linalg.norm(w["kernel"], axis=0)
  assert np.all(np.diff(norms) >= -1e-6)
  # Moments summed over two "hosts" give the same transform as one fit.
  a, b = whitening.moments(x[:700]), whitening.moments(x[700:])
  w2 = whitening.from_moments(a[0] + b[0], a[1] + b[1], a[2] + b[2])
  chex.assert_trees_all_close(w2, w, atol=1e-4)
  with pytest.raises(ClowlabError, match="at least 2"):
    whitening.fit(x[:1])


def test_degenerate_dimensions_do_not_overflow_the_gradients():
  """all-MiniLM-L6-v2's last layer has three ~1e-32 dimensions; ActNorm must not amplify them
  1e6-fold per step (the gradients overflowed float32 before this was handled)."""
  fcfg = flow.FlowConfig(dim=16, levels=3, depth=3)
  params, const = flow.init(jax.random.key(0), fcfg)
  x = jax.random.normal(jax.random.key(1), (64, 16))
  for col in (3, 4, 9):
    x = x.at[:, col].set(1e-32 * jax.random.normal(jax.random.key(col), (64,)))
  params = data_init(params, const, x, fcfg)
  loss, grads = jax.value_and_grad(lambda p: bits_per_dim(p, const, x, fcfg).mean())(params)
  assert np.isfinite(float(loss))
  # Unhandled, the largest gradient here was 7.6e22 (its square overflows float32).
  assert max(float(jnp.abs(g).max()) for g in jax.tree_util.tree_leaves(grads)) < 1e3
