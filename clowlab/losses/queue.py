"""A MoCo key queue on global arrays: negatives from past steps for contrastive losses.

    state = init(size=Q, dim=D)                       # {"queue_QD", "queue_Q", "count"}
    loss, metrics = info_nce_with_queue(q_BD, k_BD, state, temperature=0.1)
    state = enqueue(state, k_BD)                      # after the loss: keys of this step

Layout. The queue's rows are sharded over the batch devices (sharding rule `queue_(QD|Q)$`):
with n batch shards, device d owns the block of rows [d*Q/n, (d+1)*Q/n) and enqueues its own
b = B/n keys there at the block's write pointer, so an enqueue never moves data between
devices, and global batch row r = d*b + i goes to queue row d*Q/n + (count*b mod Q/n) + i.
Each block is a FIFO ring: after N enqueues the queue holds min(N*B, Q) keys, the last Q/B
steps' keys once full, each enqueue overwriting the oldest step's keys. `queue_Q` marks filled rows (a fresh queue has
none, so the loss starts with in-batch negatives only and never scores the zero rows).

Scoring. Each device scores every query of the global batch against its own block (the
queries are all-gathered, B x D, never the queue) and the per-row log-sum-exp partials are
merged with pmax/psum; the in-batch part is an ordinary B x B score on global arrays.
Without a mesh (one device, plain jit) the same math runs unsharded.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from clowlab.errors import ClowlabError
from clowlab.losses import contrastive

_MASKED = -1e30


def init(size: int, dim: int, dtype=jnp.float32) -> dict:
  return {"queue_QD": jnp.zeros((size, dim), dtype), "queue_Q": jnp.zeros((size,), jnp.bool_),
          "count": jnp.zeros((), jnp.int32)}


def _shards(batch: int) -> tuple[tuple[str, ...], int]:
  """(batch mesh axes, number of batch shards) of the mesh set with jax.set_mesh, if any."""
  axes, n = contrastive.mesh_batch_axes()
  if batch % n:
    raise ClowlabError(f"clowlab: the contrastive batch of {batch} rows is not divisible by the "
                       f"{n} batch devices. Use a multiple of {n}.")
  return axes, n


def check_sizes(size: int, batch: int) -> None:
  if size < batch or size % batch:
    raise ClowlabError(f"clowlab: queue size {size} must be a positive multiple of the global "
                       f"contrastive batch {batch} (so each device's block is whole steps). Use "
                       f"e.g. {max(batch, size // batch * batch)}.")


def enqueue(state: dict, keys_BD: jax.Array) -> dict:
  """The queue with this step's keys written at each block's pointer (see module doc)."""
  queue_QD, filled_Q, count = state["queue_QD"], state["queue_Q"], state["count"]
  Q, D = queue_QD.shape
  B = keys_BD.shape[0]
  check_sizes(Q, B)
  _, n = _shards(B)
  b, S = B // n, Q // n
  ptr = (count * b) % S
  keys_nbD = jax.lax.stop_gradient(keys_BD).astype(queue_QD.dtype).reshape(n, b, D)
  q_nSD = jax.lax.dynamic_update_slice(queue_QD.reshape(n, S, D), keys_nbD, (0, ptr, 0))
  f_nS = jax.lax.dynamic_update_slice(filled_Q.reshape(n, S), jnp.ones((n, b), jnp.bool_),
                                      (0, ptr))
  return {"queue_QD": q_nSD.reshape(Q, D), "queue_Q": f_nS.reshape(Q), "count": count + 1}


def _block_partials(q_BD, queue_SD, filled_S, temperature):
  """Per-query (max, sum of exp(s - max)) over one block of queue rows; s = q.k / t."""
  s_BS = jnp.einsum("bd,sd->bs", q_BD, queue_SD.astype(q_BD.dtype),
                    preferred_element_type=jnp.float32) / temperature
  s_BS = jnp.where(filled_S[None, :], s_BS, _MASKED)
  m_B = jax.lax.stop_gradient(jnp.max(s_BS, axis=1))
  e_B = jnp.sum(jnp.where(filled_S[None, :], jnp.exp(s_BS - m_B[:, None]), 0.0), axis=1)
  return m_B, e_B


def queue_logsumexp(q_BD, queue_QD, filled_Q, temperature):
  """(log sum_j exp(q.queue_j / t) over filled rows [B] (-1e30 if none), max score [B])."""
  axes, n = _shards(q_BD.shape[0])
  if n == 1:
    m_B, e_B = _block_partials(q_BD, queue_QD, filled_Q, temperature)
  else:
    @functools.partial(jax.shard_map, in_specs=(P(axes), P(axes), P(axes)),
                       out_specs=(P(axes), P(axes)))
    def sharded(q_bD, queue_SD, filled_S):
      q_all_BD = jax.lax.all_gather(q_bD, axes, tiled=True)
      m_B, e_B = _block_partials(q_all_BD, queue_SD, filled_S, temperature)
      m_all_B = jax.lax.stop_gradient(jax.lax.pmax(m_B, axes))
      e_all_B = jax.lax.psum(e_B * jnp.exp(m_B - m_all_B), axes)
      i = jax.lax.axis_index(axes)
      b = q_bD.shape[0]
      take = lambda x: jax.lax.dynamic_slice_in_dim(x, i * b, b)
      return take(m_all_B), take(e_all_B)

    m_B, e_B = sharded(q_BD, queue_QD, filled_Q)
  lse_B = jnp.where(e_B > 0, m_B + jnp.log(jnp.maximum(e_B, 1e-30)), _MASKED)
  return lse_B, m_B


def info_nce_with_queue(q_BD, k_BD, state: dict, *, temperature: float, normalize: bool = True):
  """InfoNCE of query i against key i; negatives: every other key of the global batch and every
  filled queue row. Keys carry no gradient (they come from a momentum encoder). Queue rows are
  scored as stored: with `normalize`, enqueue unit-norm keys.

  Returns (mean loss, metrics {accuracy, pos_sim, neg_sim, queue_fill}).
  """
  if not temperature > 0:
    raise ClowlabError(f"clowlab: contrastive temperature must be > 0, got {temperature}.")
  k_BD = jax.lax.stop_gradient(k_BD)
  if normalize:
    q_BD, k_BD = contrastive.l2_normalize(q_BD), contrastive.l2_normalize(k_BD)
  q_BD, k_BD = q_BD.astype(jnp.float32), k_BD.astype(jnp.float32)
  B = q_BD.shape[0]
  s_BB = jnp.einsum("bd,cd->bc", q_BD, k_BD) / temperature
  pos_B = jnp.diagonal(s_BB)
  lse_q_B, max_q_B = queue_logsumexp(q_BD, state["queue_QD"], state["queue_Q"], temperature)
  lse_B = jnp.logaddexp(jax.nn.logsumexp(s_BB, axis=1), lse_q_B)
  loss = jnp.mean(lse_B - pos_B)
  off_BB = ~jnp.eye(B, dtype=jnp.bool_)
  best_neg_B = jnp.maximum(jnp.max(jnp.where(off_BB, s_BB, _MASKED), axis=1), max_q_B)
  n_filled = jnp.sum(state["queue_Q"].astype(jnp.float32))
  metrics = {
      "accuracy": jnp.mean((pos_B >= best_neg_B).astype(jnp.float32)),
      "pos_sim": jnp.mean(pos_B) * temperature,
      "neg_sim": jnp.sum(jnp.where(off_BB, s_BB, 0.0)) / max(B * (B - 1), 1) * temperature,
      "queue_fill": n_filled / state["queue_Q"].shape[0],
  }
  return loss, jax.tree_util.tree_map(jax.lax.stop_gradient, metrics)
