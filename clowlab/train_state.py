"""The train state and the train step, as pure functions of a method and its configs: what the
trainer runs, what clowlab.aot compiles for a TPU topology, and what the tests call directly.

    tx, lr_fn = optimizer_for(method, ecfg, cfg)
    state, s_shard = init_state(method, ecfg, cfg, tx, mesh, imported)   # sharded, never gathered
    step = jit_train_step(method, ecfg, cfg, tx, lr_fn, s_shard)         # state, batch -> state, metrics

The state is {"step", "params", "opt_state", "method_state", "rng", "skipped"}; its shardings
follow sharding.state_sharding (params, moments and method state by the param rules).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from clowlab import methods, optim, sharding
from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc


def trainable(method: methods.Method, params: dict) -> dict:
  """The params the optimiser updates: all but the method's frozen entries."""
  return {k: v for k, v in params.items() if k not in method.frozen}


def make_train_step(method: methods.Method, ecfg: enc.EncoderConfig, cfg, tx, lr_fn):
  accum = int(cfg.get("grad_accum_steps", 1))

  def loss_fn(train_params, frozen, method_state, batch, rng):
    params = {**frozen, **train_params}
    loss, metrics, new_state = method.loss(params, method_state, batch, rng, ecfg, cfg)
    return loss, (metrics, new_state)

  # Gradients only for the trained entries: a frozen encoder costs no backward pass.
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(state, batch):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    params, mstate = trainable(method, state["params"]), state["method_state"]
    frozen = {k: v for k, v in state["params"].items() if k in method.frozen}
    if accum == 1:
      (loss, (metrics, new_mstate)), grads = grad_fn(params, frozen, mstate, batch, rng)
    else:
      # Micro-batch i takes rows i, i+accum, ...: each micro-batch stays spread over all devices.
      micro = jax.tree_util.tree_map(
          lambda x: jnp.swapaxes(x.reshape(x.shape[0] // accum, accum, *x.shape[1:]), 0, 1),
          batch)

      def body(carry, xs):
        g_acc, ms = carry
        mb, i = xs
        (l, (m, ms)), g = grad_fn(params, frozen, ms, mb, jax.random.fold_in(rng, i))
        return (jax.tree_util.tree_map(jnp.add, g_acc, g), ms), (l, m)

      zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
      (grads, new_mstate), (losses, ms) = jax.lax.scan(body, (zeros, mstate),
                                                       (micro, jnp.arange(accum)))
      grads = jax.tree_util.tree_map(lambda g: g / accum, grads)
      loss = losses.mean()
      metrics = jax.tree_util.tree_map(lambda m: m.mean(0), ms)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, new_opt = tx.update(grads, state["opt_state"], params)
    new_params = {**frozen, **optax.apply_updates(params, updates)}
    # NaN/Inf guard: a bad step leaves params, optimiser and method state untouched (so the
    # schedule, which counts applied updates, does not advance either).
    keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_state = {
        "step": state["step"] + 1,
        "params": keep(new_params, state["params"]),
        "opt_state": keep(new_opt, state["opt_state"]),
        "method_state": keep(new_mstate, mstate),
        "rng": state["rng"],
        "skipped": state["skipped"] + (~finite).astype(jnp.int32),
    }
    out = {**metrics, "loss": loss, "grad_norm": grad_norm, "lr": lr_fn(state["step"] - state["skipped"]),
           "skipped_steps": new_state["skipped"], "finite": finite}
    return new_state, out

  return train_step


def jit_train_step(method, ecfg, cfg, tx, lr_fn, s_shard):
  """The step as the loop runs it: state in and out in its shardings (donated); the batch keeps
  the sharding it arrives with (sharding.global_batch)."""
  return jax.jit(make_train_step(method, ecfg, cfg, tx, lr_fn),
                 in_shardings=(s_shard, None), out_shardings=(s_shard, None), donate_argnums=0)


def optimizer_for(method, ecfg, cfg):
  """(optax transformation, lr schedule) over the method's trainable params."""
  shapes = jax.eval_shape(lambda: {"encoder": enc.param_shapes(ecfg),
                                   **method.init_heads(jax.random.key(0), ecfg, cfg)})
  return optim.make_optimizer(cfg.optim, cfg.total_steps, trainable(method, shapes))


# ---------------------------------------------------------------------------------------------
# The state


def _state_fns(method, ecfg, cfg, tx):
  """() -> fresh params, and params -> the whole train state: pure, so that jax.eval_shape gives
  the state's shapes without allocating it (clowlab.aot compiles a step from those)."""
  rng = jax.random.key(cfg.seed)
  k_enc, k_heads, k_run = jax.random.split(rng, 3)

  def fresh_params():
    return {"encoder": enc.init_params(k_enc, ecfg), **method.init_heads(k_heads, ecfg, cfg)}

  def rest(params):
    return {"step": jnp.zeros((), jnp.int32), "params": params,
            "opt_state": tx.init(trainable(method, params)),
            "method_state": method.init_state(params, ecfg, cfg),
            "rng": jax.random.key_data(k_run), "skipped": jnp.zeros((), jnp.int32)}

  return fresh_params, rest


def abstract_state(method, ecfg, cfg, tx, mesh):
  """The train state as ShapeDtypeStructs carrying their shardings, and the shardings."""
  fresh_params, rest = _state_fns(method, ecfg, cfg, tx)
  shapes = jax.eval_shape(rest, jax.eval_shape(fresh_params))
  s_shard = sharding.state_sharding(shapes, mesh)
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, s_shard), s_shard


def init_state(method, ecfg, cfg, tx, mesh, imported=None):
  """The sharded train state: params created directly in their shardings (never gathered)."""
  fresh_params, rest = _state_fns(method, ecfg, cfg, tx)
  shapes = jax.eval_shape(fresh_params)
  p_shard = sharding.param_sharding(shapes, mesh)
  params = jax.jit(fresh_params, out_shardings=p_shard)()
  if imported:
    for name, sub in imported.items():
      if name in params:
        want = jax.tree_util.tree_structure(params[name])
        if jax.tree_util.tree_structure(sub) != want:
          raise ClowlabError(f"clowlab: init_from's '{name}' does not have the structure "
                             f"{cfg.method} expects.")
        params[name] = jax.device_put(sub, p_shard[name])
  state_shapes = jax.eval_shape(rest, params)
  s_shard = sharding.state_sharding(state_shapes, mesh)
  return jax.jit(rest, out_shardings=s_shard)(params), s_shard
