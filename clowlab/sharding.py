"""Device mesh, parameter sharding rules and global batches.

Mesh vocabulary (as maxtext): `data` is pure data parallelism (params replicated across it),
`fsdp` is data parallelism whose params and optimiser state are also sharded across it (ZeRO-3
style: XLA all-gathers a layer's weights just before use). The batch is split over both axes.
Axes are `AxisType.Auto`: losses and the encoder are written on global arrays and XLA's SPMD
partitioner inserts the collectives (FSDP weight all-gathers, gradient reduce-scatters) from the
in/out shardings of the jitted step.
Multi-host: every process builds the same global mesh and feeds only its local rows of the
global batch (`global_batch`).
"""
from __future__ import annotations

import logging
import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from clowlab.errors import ClowlabError

MESH_AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")

# First match wins; a regex on the "/"-joined param path. A spec names the axis of each array
# dim; a dim that the mesh axis size does not divide stays replicated (see `param_sharding`).
PARAM_RULES: tuple[tuple[str, P], ...] = (
    (r"embeddings/(word|position)$", P("fsdp", None)),           # (V, D): vocab rows
    (r"layers/.*/kernel$", P(None, "fsdp", None)),                # (layers, in, out)
    (r"(mlm_head|pooler|projection|head).*/kernel$", P("fsdp", None)),
    # Method state that grows with the data, e.g. InfoXLM's key queue: rows over every device.
    (r"(^|/)queue_(QD|Q)$", P(BATCH_AXES)),
    (r".*", P()),                                                 # biases, LayerNorm: replicated
)


def maybe_initialize_distributed(cfg) -> None:
  """Multi-host start-up: `jax.distributed.initialize` when the config asks for it.

  On TPU pods the arguments are discovered from the environment; on CPU/GPU clusters pass
  coordinator_address, num_processes and process_id.
  """
  d = cfg.get("distributed", None)
  if not d or not d.get("enabled", False):
    return
  if d.get("cpu_collectives"):
    jax.config.update("jax_cpu_collectives_implementation", d.cpu_collectives)
  kwargs = {k: d.get(k) for k in ("coordinator_address", "num_processes", "process_id")
            if d.get(k) is not None}
  jax.distributed.initialize(**kwargs)


def make_mesh(mesh_cfg: dict[str, int] | None = None,
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A ("data", "fsdp") mesh; one size may be -1 ("all remaining devices")."""
  devices = list(devices if devices is not None else jax.devices())
  n = len(devices)
  sizes = dict(mesh_cfg or {"data": 1, "fsdp": -1})
  unknown = set(sizes) - set(MESH_AXES)
  if unknown:
    raise ClowlabError(f"clowlab: config.mesh has unknown axes {sorted(unknown)}; valid: "
                       f"{list(MESH_AXES)}.")
  shape = [int(sizes.get(a, 1)) for a in MESH_AXES]
  if shape.count(-1) > 1:
    raise ClowlabError("clowlab: config.mesh may set at most one axis to -1.")
  if -1 in shape:
    rest = int(np.prod([s for s in shape if s != -1]))
    if n % rest:
      raise ClowlabError(f"clowlab: config.mesh {sizes} does not divide the {n} devices.")
    shape[shape.index(-1)] = n // rest
  if int(np.prod(shape)) != n:
    raise ClowlabError(f"clowlab: config.mesh {dict(zip(MESH_AXES, shape))} needs "
                       f"{int(np.prod(shape))} devices but {n} are available. Set the mesh "
                       "sizes to multiply to the device count (or one axis to -1).")
  return jax.make_mesh(tuple(shape), MESH_AXES, axis_types=(AxisType.Auto,) * len(shape),
                       devices=devices)


def mesh_from_config(cfg) -> jax.sharding.Mesh:
  n = int(cfg.get("num_devices", 0) or 0)
  devices = jax.devices()
  if n > len(devices) or n < 0:
    raise ClowlabError(f"clowlab: --config.num_devices={n} but {len(devices)} devices exist. "
                       "Use 0 (all) or at most the device count.")
  if n and jax.process_count() > 1:
    raise ClowlabError("clowlab: --config.num_devices is for single-process runs; set it to 0.")
  return make_mesh(dict(cfg.get("mesh", {}) or {}) or None, devices[:n] if n else devices)


def _path_str(path) -> str:
  parts = []
  for k in path:
    parts.append(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))))
  return "/".join(parts)


def spec_for(path: str, shape: tuple[int, ...], mesh: jax.sharding.Mesh,
             rules=PARAM_RULES) -> P:
  for pattern, spec in rules:
    if re.search(pattern, path):
      break
  else:
    return P()
  if len(spec) > len(shape):
    return P()
  dims = list(spec) + [None] * (len(shape) - len(spec))
  size = lambda axis: int(np.prod([mesh.shape[a] for a in
                                   (axis if isinstance(axis, tuple) else (axis,))]))
  for i, axis in enumerate(dims):
    if axis is not None and shape[i] % size(axis):
      # e.g. XLM-R's 250002-row vocabulary over 8 devices: shard another (the largest free,
      # divisible) dim instead; replicate only if none divides.
      dims[i] = None
      free = [j for j in range(len(shape)) if dims[j] is None and j != i
              and shape[j] % size(axis) == 0]
      if free:
        dims[max(free, key=lambda j: shape[j])] = axis
      else:
        logging.debug("param %s: no dim divisible by %s=%d: replicated", path, axis,
                      size(axis))
  return P(*dims) if any(d is not None for d in dims) else P()


def param_sharding(tree: Any, mesh: jax.sharding.Mesh, rules=PARAM_RULES) -> Any:
  """NamedShardings for a params-shaped tree (arrays or ShapeDtypeStructs)."""
  return jax.tree_util.tree_map_with_path(
      lambda p, x: NamedSharding(mesh, spec_for(_path_str(p), tuple(np.shape(x)), mesh, rules)),
      tree)


def sharding_table(tree: Any, mesh: jax.sharding.Mesh) -> dict[str, str]:
  """{param path: partition spec} — for golden-sharding files and logs."""
  shardings = param_sharding(tree, mesh)
  flat = jax.tree_util.tree_flatten_with_path(shardings)[0]
  return {_path_str(p): str(s.spec) for p, s in flat}


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_parallel_size(mesh: jax.sharding.Mesh) -> int:
  return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def global_batch(local_batch: Any, mesh: jax.sharding.Mesh) -> Any:
  """This process's rows -> global jax.Arrays sharded over the batch axes (multi-host safe)."""
  def put(x):
    x = np.asarray(x)
    spec = P(BATCH_AXES, *([None] * (x.ndim - 1)))
    return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), x)

  return jax.tree_util.tree_map(put, local_batch)


def state_sharding(state_shapes, mesh):
  """A train state's shardings (the trainer's and the finetune harness's): params, optimiser
  moments and method state follow the param rules (by path); the rest is replicated."""
  return {k: (param_sharding(v, mesh) if k in ("params", "opt_state", "method_state")
              else jax.tree_util.tree_map(lambda _: replicated(mesh), v))
          for k, v in state_shapes.items()}
