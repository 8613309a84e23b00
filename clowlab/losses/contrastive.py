"""InfoNCE / NT-Xent where every query scores against the keys of the whole global batch.

Row i of `q` is paired with row i of `k`; every other key (and every hard negative, SimCSE
supervised style: logits against [k; hard_neg], B x 2B) is a negative. Three implementations of
the same loss, equal in value and gradients:

* `info_nce`: written on global arrays. Under `jax.jit` with a batch-sharded `NamedSharding` the
  compiler inserts the collectives (an all-gather of the keys).
* `info_nce_sharded` / `info_nce_per_shard`: explicit `jax.shard_map`; each device all-gathers the
  keys (tiled) and computes only its local rows of the logits; labels are offset by the device's
  position in the global batch. The transpose of all_gather is a reduce-scatter, so key
  gradients reach the device that owns the key. `info_nce_per_shard` is the body, for use inside
  a data-parallel train step that is already a shard_map.
* `info_nce_chunked`: query rows in chunks of `chunk_size` under a `jax.checkpoint`-ed scan, so
  neither forward nor backward holds the B x B logits (backward recomputes each chunk).

The symmetric (k -> q) direction never transposes or recomputes the logits: each block of rows
yields column partials (max, sum-exp, sum) that are merged as a streaming log-sum-exp (across
chunks by the scan carry, across devices by pmax/psum).

Conventions. `valid_B` (bool, default all true) removes rows from the global batch: an invalid
row is neither a query nor a key, and its hard negative (row i of `hard_negatives_BD`) is dropped
too. Losses are means over the valid rows. Label smoothing spreads `label_smoothing` uniformly
over the valid candidates of each row (optax.smooth_labels over those columns). The k -> q
direction scores each key against the queries only (hard negatives are not queries).
Metrics (no gradient): accuracy (positive is the top-1 candidate; ties count as correct; averaged
over both directions when symmetric), pos_sim / neg_sim (mean similarity, i.e. logit *
temperature, of positive pairs and of forward-direction negative pairs).
"""
from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from clowlab.errors import ClowlabError

# Finite rather than -inf so a fully masked row/column gives zero gradients, not NaN.
_MASKED = -1e30

Metrics = dict[str, jax.Array]


def l2_normalize(x_ND: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Rows scaled to unit L2 norm (computed in float32; zero rows stay zero, no NaN)."""
  x32_ND = x_ND.astype(jnp.float32)
  inv_N1 = jax.lax.rsqrt(jnp.maximum(jnp.sum(x32_ND * x32_ND, -1, keepdims=True), eps * eps))
  return (x32_ND * inv_N1).astype(x_ND.dtype)


# ------------------------------------------------------------------------------ shared math

def _scores(a_rD, c_ND, temperature):
  """Logits a @ c.T / temperature, float32 accumulation whatever the input dtype."""
  s_rN = jnp.einsum("rd,nd->rn", a_rD, c_ND, preferred_element_type=jnp.float32)
  return s_rN / temperature


def _row_terms(logits_rN, labels_r, cand_valid_N, n_cands, label_smoothing,
               hard_negative_weight=0.0):
  """Per-row cross-entropy pieces; each row holds all candidates, so they are complete.

  With hard negatives the candidates are [keys; hard negatives], so row i's own hard negative
  is column i + N/2; `hard_negative_weight` is added to that logit (SimCSE's
  `hard_negative_weight`, a logit offset applied after the temperature).

  Returns (loss_r, correct_r, pos_r, valid_sum_r): smoothed CE, positive is top-1, positive
  logit, and the sum of logits over valid candidates (for smoothing and the neg_sim metric).
  """
  N = logits_rN.shape[1]
  if hard_negative_weight:
    own_hn_rN = jnp.arange(N)[None, :] == labels_r[:, None] + N // 2
    logits_rN = logits_rN + jnp.where(own_hn_rN, hard_negative_weight, 0.0)
  is_pos_rN = jnp.arange(N)[None, :] == labels_r[:, None]
  masked_rN = jnp.where(cand_valid_N[None, :], logits_rN, _MASKED)
  lse_r = jax.nn.logsumexp(masked_rN, axis=-1)
  pos_r = jnp.sum(jnp.where(is_pos_rN, logits_rN, 0.0), axis=-1)
  valid_sum_r = jnp.sum(jnp.where(cand_valid_N[None, :], logits_rN, 0.0), axis=-1)
  # CE with labels (1 - e) * onehot + e / K: lse - (1 - e) * pos - e * mean(valid logits).
  loss_r = lse_r - (1.0 - label_smoothing) * pos_r
  if label_smoothing:
    loss_r = loss_r - label_smoothing * valid_sum_r / jnp.maximum(n_cands, 1)
  correct_r = pos_r >= jax.lax.stop_gradient(jnp.max(masked_rN, axis=-1))
  return loss_r, correct_r, pos_r, valid_sum_r


def _col_partials(logits_rB, row_valid_r):
  """Partial column stats of the key block of the logits over some rows (queries).

  (max, sum exp(l - max), sum l) over the valid rows; the max carries no gradient since the
  log-sum-exp does not depend on it, which keeps the streaming merge exact for autodiff.
  """
  masked_rB = jnp.where(row_valid_r[:, None], logits_rB, _MASKED)
  m_B = jax.lax.stop_gradient(jnp.max(masked_rB, axis=0))
  s_B = jnp.sum(jnp.exp(masked_rB - m_B[None, :]), axis=0)
  t_B = jnp.sum(jnp.where(row_valid_r[:, None], logits_rB, 0.0), axis=0)
  return m_B, s_B, t_B


def _merge_cols(a, b):
  """Streaming log-sum-exp merge of two sets of column partials."""
  (ma, sa, ta), (mb, sb, tb) = a, b
  m = jnp.maximum(ma, mb)
  return m, sa * jnp.exp(ma - m) + sb * jnp.exp(mb - m), ta + tb


def _totals(rows, w_r, cols_r, n_valid, n_cands, label_smoothing, total):
  """Sums (via `total`, a local sum or a sum+psum) of the loss and metric numerators.

  rows: _row_terms outputs for the rows owned here; cols_r: (max, sum-exp, sum) of the key
  columns owned here (same indices as the rows) over all queries, or None if not symmetric.
  """
  loss_r, correct_r, pos_r, valid_sum_r = rows
  w_r = w_r.astype(jnp.float32)
  out = {
      "loss_fwd": total(w_r * loss_r),
      "correct_fwd": total(w_r * correct_r),
      "pos": total(w_r * jax.lax.stop_gradient(pos_r)),
      "neg": total(w_r * jax.lax.stop_gradient(valid_sum_r - pos_r)),
  }
  if cols_r is not None:
    m_r, s_r, t_r = cols_r
    # Key j's positive is query j, i.e. the same diagonal logit as row j's positive.
    loss_rev_r = m_r + jnp.log(s_r) - (1.0 - label_smoothing) * pos_r
    if label_smoothing:
      loss_rev_r = loss_rev_r - label_smoothing * t_r / jnp.maximum(n_valid, 1)
    out["loss_rev"] = total(w_r * loss_rev_r)
    out["correct_rev"] = total(w_r * (pos_r >= m_r))
  return out


def _finish(sums, n_valid, n_cands, temperature, symmetric) -> tuple[jax.Array, Metrics]:
  n = jnp.maximum(n_valid, 1.0)
  loss = sums["loss_fwd"] / n
  acc = sums["correct_fwd"] / n
  if symmetric:
    loss = 0.5 * (loss + sums["loss_rev"] / n)
    acc = 0.5 * (acc + sums["correct_rev"] / n)
  t = jax.lax.stop_gradient(jnp.asarray(temperature, jnp.float32))
  metrics = {
      "loss": jax.lax.stop_gradient(loss),
      "accuracy": acc,
      "pos_sim": sums["pos"] * t / n,
      "neg_sim": sums["neg"] * t / jnp.maximum(n_valid * (n_cands - 1.0), 1.0),
      "num_valid": n_valid,
  }
  return loss, metrics


def _check_args(q_BD, k_BD, hard_negatives_BD, valid_B, temperature, label_smoothing):
  if q_BD.ndim != 2 or q_BD.shape != k_BD.shape:
    raise ClowlabError(f"info_nce: q and k must both be [batch, dim] with equal shapes, got "
                       f"{q_BD.shape} and {k_BD.shape}; pass one embedding row per pair.")
  if hard_negatives_BD is not None and hard_negatives_BD.shape != k_BD.shape:
    raise ClowlabError(f"info_nce: hard_negatives must have the keys' shape {k_BD.shape} (one "
                       f"per pair), got {hard_negatives_BD.shape}.")
  if valid_B is not None and valid_B.shape != q_BD.shape[:1]:
    raise ClowlabError(f"info_nce: valid_B must have shape ({q_BD.shape[0]},), got "
                       f"{valid_B.shape}.")
  if isinstance(temperature, numbers.Real) and not temperature > 0:
    raise ClowlabError(f"info_nce: temperature must be > 0, got {temperature}.")
  if not 0.0 <= label_smoothing < 1.0:
    raise ClowlabError(f"info_nce: label_smoothing must be in [0, 1), got {label_smoothing}.")


def _prepare(q_BD, k_BD, hard_negatives_BD, normalize):
  if normalize:
    q_BD, k_BD = l2_normalize(q_BD), l2_normalize(k_BD)
    if hard_negatives_BD is not None:
      hard_negatives_BD = l2_normalize(hard_negatives_BD)
  return q_BD, k_BD, hard_negatives_BD


def _candidates(k_BD, hard_negatives_BD, valid_B):
  """[k; hard_neg] and their validity (a hard negative shares its row's validity)."""
  if hard_negatives_BD is None:
    return k_BD, valid_B
  return (jnp.concatenate([k_BD, hard_negatives_BD], axis=0),
          jnp.concatenate([valid_B, valid_B], axis=0))


def _batch_spec(x):
  """The mesh axes an array's rows are sharded over, if they are Explicit (else None)."""
  spec = jax.typeof(x).sharding.spec
  return spec[0] if len(spec) else None


def _spec_size(x, entry) -> int:
  shape = jax.typeof(x).sharding.mesh.shape
  n = 1
  for a in (entry,) if isinstance(entry, str) else entry:
    n *= shape[a]
  return n


def _reshard(x, spec, like=None):
  """Reshard onto the mesh in the type of `like` (default x): no `jax.set_mesh` needed."""
  mesh = jax.typeof(x if like is None else like).sharding.mesh
  return jax.sharding.reshard(x, NamedSharding(mesh, spec))


def _unshard_rows(x):
  """Replicate rows of an array sharded along Explicit mesh axes (no-op otherwise).

  With Explicit axes, q @ k.T with both operands batch-sharded is an illegal sharding, so the
  keys are gathered explicitly; with Auto axes the compiler chooses the gather itself.
  """
  spec = jax.typeof(x).sharding.spec
  if len(spec) and spec[0] is not None:
    x = _reshard(x, P(None, *spec[1:]))
  return x


# ------------------------------------------------------------------------------ global arrays

def info_nce(q_BD: jax.Array, k_BD: jax.Array, *, temperature, symmetric: bool = False,
             hard_negatives_BD: jax.Array | None = None, label_smoothing: float = 0.0,
             normalize: bool = True, valid_B: jax.Array | None = None,
             hard_negative_weight: float = 0.0) -> tuple[jax.Array, Metrics]:
  """InfoNCE on global arrays; returns (scalar loss, metrics). See the module docstring."""
  _check_args(q_BD, k_BD, hard_negatives_BD, valid_B, temperature, label_smoothing)
  B = q_BD.shape[0]
  if valid_B is None:
    valid_B = jnp.ones((B,), jnp.bool_)
  q_BD, k_BD, hard_negatives_BD = _prepare(q_BD, k_BD, hard_negatives_BD, normalize)
  cands_ND, cand_valid_N = _candidates(_unshard_rows(k_BD),
                                       None if hard_negatives_BD is None
                                       else _unshard_rows(hard_negatives_BD),
                                       _unshard_rows(valid_B))
  n_valid = jnp.sum(valid_B.astype(jnp.float32))
  n_cands = n_valid * (1 if hard_negatives_BD is None else 2)
  logits_BN = _scores(q_BD, cands_ND, temperature)
  rows = _row_terms(logits_BN, jnp.arange(B), cand_valid_N, n_cands, label_smoothing,
                    hard_negative_weight)
  cols = _col_partials(logits_BN[:, :B], valid_B) if symmetric else None
  sums = _totals(rows, valid_B, cols, n_valid, n_cands, label_smoothing, jnp.sum)
  return _finish(sums, n_valid, n_cands, temperature, symmetric)


# ------------------------------------------------------------------------------ shard_map

def _axes(axis_names) -> tuple[str, ...]:
  return (axis_names,) if isinstance(axis_names, str) else tuple(axis_names)


def info_nce_per_shard(q_bD: jax.Array, k_bD: jax.Array, *, axis_names: str | Sequence[str],
                       temperature, symmetric: bool = False,
                       hard_negatives_bD: jax.Array | None = None,
                       label_smoothing: float = 0.0, normalize: bool = True,
                       valid_b: jax.Array | None = None,
                       hard_negative_weight: float = 0.0) -> tuple[jax.Array, Metrics]:
  """The shard_map body: local rows in, the global-batch loss out (equal on every device).

  Call inside a `jax.shard_map` whose in_specs shard the batch over `axis_names` (in that
  order); the global batch is the concatenation of the local rows in `axis_index` order.
  Differentiate it under the default check_vma=True: a replicated (P()) parameter then gets
  exactly the global-batch gradient, already summed over devices. (Under check_vma=False the
  psum transposes differently: pmean the per-device gradients instead, do not psum them.)
  """
  axes = _axes(axis_names)
  b = q_bD.shape[0]
  _check_args(q_bD, k_bD, hard_negatives_bD, valid_b, temperature, label_smoothing)
  if valid_b is None:
    valid_b = jnp.ones((b,), jnp.bool_)
  q_bD, k_bD, hard_negatives_bD = _prepare(q_bD, k_bD, hard_negatives_bD, normalize)
  gather = functools.partial(jax.lax.all_gather, axis_name=axes, axis=0, tiled=True)
  valid_B = gather(valid_b)
  B = valid_B.shape[0]
  cands_ND, cand_valid_N = _candidates(
      gather(k_bD), None if hard_negatives_bD is None else gather(hard_negatives_bD), valid_B)
  # psum, not a sum of the gathered mask, so the count is typed as equal on every device.
  n_valid = jax.lax.psum(jnp.sum(valid_b.astype(jnp.float32)), axes)
  n_cands = n_valid * (1 if hard_negatives_bD is None else 2)
  # This device's rows are rows [start, start + b) of the global batch.
  start = jax.lax.axis_index(axes) * b
  logits_bN = _scores(q_bD, cands_ND, temperature)
  rows = _row_terms(logits_bN, start + jnp.arange(b), cand_valid_N, n_cands, label_smoothing,
                    hard_negative_weight)
  cols_b = None
  if symmetric:
    m_B, s_B, t_B = _col_partials(logits_bN[:, :B], valid_b)
    g_B = jax.lax.pmax(m_B, axes)
    s_B = jax.lax.psum(s_B * jnp.exp(m_B - g_B), axes)
    t_B = jax.lax.psum(t_B, axes)
    # Own keys' columns: same indices as own rows.
    cols_b = tuple(jax.lax.dynamic_slice_in_dim(x_B, start, b) for x_B in (g_B, s_B, t_B))
  total = lambda x_b: jax.lax.psum(jnp.sum(x_b), axes)  # noqa: E731
  sums = _totals(rows, valid_b, cols_b, n_valid, n_cands, label_smoothing, total)
  return _finish(sums, n_valid, n_cands, temperature, symmetric)


def info_nce_sharded(q_BD: jax.Array, k_BD: jax.Array, *, temperature,
                     axis_names: str | Sequence[str] = ("data",), mesh=None,
                     symmetric: bool = False, hard_negatives_BD: jax.Array | None = None,
                     label_smoothing: float = 0.0, normalize: bool = True,
                     valid_B: jax.Array | None = None,
                     hard_negative_weight: float = 0.0) -> tuple[jax.Array, Metrics]:
  """`info_nce` on global arrays via an explicit shard_map over the batch axes `axis_names`.

  `mesh` defaults to the one set with `jax.set_mesh`. The batch is resharded to
  P(axis_names, None) on entry if it is not already; mesh axes not named are replicated.
  """
  axes = _axes(axis_names)
  _check_args(q_BD, k_BD, hard_negatives_BD, valid_B, temperature, label_smoothing)
  m = mesh if mesh is not None else jax.sharding.get_abstract_mesh()
  if m.empty:
    raise ClowlabError("info_nce_sharded: no mesh; pass mesh= or call it under "
                       "`with jax.set_mesh(mesh):`.")
  missing = [a for a in axes if a not in m.shape]
  if missing:
    raise ClowlabError(f"info_nce_sharded: axis names {missing} are not in the mesh "
                       f"{dict(m.shape)}; pass axis_names= from the mesh's batch axes.")
  n_dev = 1
  for a in axes:
    n_dev *= m.shape[a]
  if q_BD.shape[0] % n_dev:
    raise ClowlabError(f"info_nce_sharded: global batch {q_BD.shape[0]} is not divisible by "
                       f"the {n_dev} devices of axes {axes}; pad it and mark the padding "
                       f"invalid with valid_B.")
  if valid_B is None:
    valid_B = jnp.ones(q_BD.shape[:1], jnp.bool_)
  row, vec = P(axes, None), P(axes)

  def body(q_bD, k_bD, hn_bD, valid_b, t):
    return info_nce_per_shard(q_bD, k_bD, axis_names=axes, temperature=t, symmetric=symmetric,
                              hard_negatives_bD=hn_bD, label_smoothing=label_smoothing,
                              normalize=normalize, valid_b=valid_b,
                              hard_negative_weight=hard_negative_weight)

  has_hn = hard_negatives_BD is not None
  fn = jax.shard_map(
      body if has_hn else (lambda q, k, v, t: body(q, k, None, v, t)), mesh=mesh,
      in_specs=(row, row, row, vec, P()) if has_hn else (row, row, vec, P()),
      out_specs=(P(), P()))
  args = (q_BD, k_BD) + ((hard_negatives_BD,) if has_hn else ()) + (valid_B,)
  if AxisType.Explicit in m.axis_types:  # shard_map wants Explicit inputs typed as in_specs
    args = tuple(_to_spec(x, vec if x.ndim == 1 else row, mesh) for x in args)
  return fn(*args, jnp.asarray(temperature, jnp.float32))


def _to_spec(x, spec, mesh):
  if jax.typeof(x).sharding.spec == spec:
    return x
  return jax.sharding.reshard(x, spec if mesh is None else NamedSharding(mesh, spec))


# ------------------------------------------------------------------------------ chunked

def info_nce_chunked(q_BD: jax.Array, k_BD: jax.Array, *, temperature, chunk_size: int,
                     symmetric: bool = False, hard_negatives_BD: jax.Array | None = None,
                     label_smoothing: float = 0.0, normalize: bool = True,
                     valid_B: jax.Array | None = None,
                     hard_negative_weight: float = 0.0) -> tuple[jax.Array, Metrics]:
  """`info_nce` with the logits computed `chunk_size` query rows at a time.

  Peak memory is O(chunk_size x 2B) for the logits instead of O(B x 2B), forward and backward
  (each chunk is rematerialised in backward). B need not divide by chunk_size (the last chunk
  is padded with invalid rows). On a batch-sharded array under `jax.jit`, chunks are strided
  so each chunk's rows stay spread over the devices; with Explicit mesh axes keep B a multiple
  of chunk_size and chunk_size a multiple of the device count, or the rows get replicated.
  """
  _check_args(q_BD, k_BD, hard_negatives_BD, valid_B, temperature, label_smoothing)
  if not isinstance(chunk_size, int) or chunk_size < 1:
    raise ClowlabError(f"info_nce_chunked: chunk_size must be a positive int, got "
                       f"{chunk_size!r}.")
  B, D = q_BD.shape
  n_chunks = -(-B // min(chunk_size, B))
  C = -(-B // n_chunks)  # balance the chunks so the padding is < n_chunks rows
  if valid_B is None:
    valid_B = jnp.ones((B,), jnp.bool_)
  q_BD, k_BD, hard_negatives_BD = _prepare(q_BD, k_BD, hard_negatives_BD, normalize)
  cands_ND, cand_valid_N = _candidates(k_BD, hard_negatives_BD, valid_B)
  n_valid = jnp.sum(valid_B.astype(jnp.float32))
  n_cands = n_valid * (1 if hard_negatives_BD is None else 2)

  # Strided chunks (chunk j holds rows j, j + K, j + 2K, ...): contiguous row blocks of a
  # batch-sharded array then split evenly over the devices, so each chunk stays sharded.
  pad = n_chunks * C - B
  bspec = _batch_spec(q_BD)
  if pad and bspec is not None:
    q_BD, valid_B = _unshard_rows(q_BD), _unshard_rows(valid_B)
    bspec = None
  to_chunks = lambda x: jnp.swapaxes(  # noqa: E731
      jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1)).reshape(C, n_chunks, *x.shape[1:]), 0, 1)
  q_KCD, w_KC, labels_KC = to_chunks(q_BD), to_chunks(valid_B), to_chunks(jnp.arange(B))
  if bspec is not None:  # Explicit axes: scan needs the chunk axis replicated.
    spec = bspec if C % _spec_size(q_BD, bspec) == 0 else None
    q_KCD = _reshard(q_KCD, P(None, spec, None), q_BD)
    w_KC = _reshard(w_KC, P(None, spec), q_BD)
    labels_KC = _reshard(labels_KC, P(None, spec), q_BD)
  cands_ND, cand_valid_N = _unshard_rows(cands_ND), _unshard_rows(cand_valid_N)

  @jax.checkpoint  # backward recomputes the chunk's logits instead of storing them
  def chunk(cols, xs):
    q_CD, w_C, labels_C = xs
    logits_CN = _scores(q_CD, cands_ND, temperature)
    rows = _row_terms(logits_CN, labels_C, cand_valid_N, n_cands, label_smoothing,
                      hard_negative_weight)
    if symmetric:
      cols = _merge_cols(cols, _col_partials(logits_CN[:, :B], w_C))
    return cols, rows

  init = None
  if symmetric:
    init = (jnp.full((B,), _MASKED, jnp.float32), jnp.zeros((B,), jnp.float32),
            jnp.zeros((B,), jnp.float32))
  cols_B, rows_KC = jax.lax.scan(chunk, init, (q_KCD, w_KC, labels_KC))
  rows_B = tuple(jnp.swapaxes(x_KC, 0, 1).reshape(-1)[:B] for x_KC in rows_KC)
  sums = _totals(rows_B, valid_B, cols_B, n_valid, n_cands, label_smoothing, jnp.sum)
  return _finish(sums, n_valid, n_cands, temperature, symmetric)


# ------------------------------------------------------------------------------ by name

IMPLS = ("sharded", "global", "chunked")


def mesh_batch_axes(batch_axes: Sequence[str] = ("data", "fsdp")) -> tuple[tuple[str, ...], int]:
  """(batch axes of the mesh set with jax.set_mesh, number of batch shards); ((), 1) with no
  mesh (a plain jit)."""
  m = jax.sharding.get_abstract_mesh()
  axes = tuple(a for a in batch_axes if not m.empty and a in m.shape)
  n = 1
  for a in axes:
    n *= m.shape[a]
  return axes, n


def info_nce_by_name(q_BD: jax.Array, k_BD: jax.Array, *, impl: str = "sharded",
                     chunk_size: int = 0, batch_axes: Sequence[str] = ("data", "fsdp"),
                     **kw) -> tuple[jax.Array, Metrics]:
  """The implementation a config names (methods call this; `kw` as in `info_nce`).

  "sharded" (default, measured fastest in benchmarks/contrastive_loss.py) needs the mesh set
  with `jax.set_mesh` (the trainer does) and a batch divisible by its batch-axis devices; with
  no mesh (a plain jit, one device) it is the same loss as "global".
  """
  if impl not in IMPLS:
    raise ClowlabError(f"clowlab: unknown contrastive loss impl {impl!r}; valid: "
                       f"{', '.join(IMPLS)}.")
  if impl == "chunked":
    return info_nce_chunked(q_BD, k_BD, chunk_size=int(chunk_size) or 1024, **kw)
  if impl == "sharded":
    axes, n_dev = mesh_batch_axes(batch_axes)
    if axes and n_dev > 1 and q_BD.shape[0] % n_dev == 0:
      return info_nce_sharded(q_BD, k_BD, axis_names=axes, **kw)
  return info_nce(q_BD, k_BD, **kw)
