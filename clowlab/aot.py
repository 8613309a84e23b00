"""Ahead-of-time compile check: does a config's train step compile for a TPU pod, and fit?

    python -m clowlab.aot --config=configs/infoxlm.py --topology=v5e:4x4 [--config.key=value]
    python -m clowlab.aot --all --topology=v5e:4x4          # every method's pod config

On a machine without TPUs (as maxtext does): `libtpu` describes a TPU topology
(`jax.experimental.topologies`), the step the trainer runs (`train_state.jit_train_step`) is lowered on
abstract state and batch (`train_state.abstract_state`, `Method.batch_spec`: no params are allocated and
no data is read) over the config's mesh on those devices, and XLA's TPU compiler compiles it. The
compiled executable's `memory_analysis()` is the per-device estimate: arguments (params, optimiser
state, batch) + outputs - donated aliases + temporaries (activations, gradients, collectives'
buffers). `--topology=cpu:N` does the same on N host CPU devices when libtpu is not installed
(sizes then follow XLA:CPU's buffer assignment, not a TPU's).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time

import numpy as np

from clowlab.errors import ClowlabError

GIB = 1024 ** 3
# HBM per JAX device (one per chip; v2/v3 expose each of a chip's two cores as a device).
HBM_GIB = {"v2": 8, "v3": 16, "v4": 32, "v5e": 16, "v5p": 95, "v6e": 32}


@dataclasses.dataclass
class Report:
  config: str
  method: str
  topology: str
  devices: int
  mesh: dict[str, int]
  model: str                     # layers x hidden, vocab, and where the architecture came from
  params: int                    # parameters (all, incl. frozen ones)
  batch: str                     # global batch, e.g. "2048x256"
  argument_gib: float            # per device
  output_gib: float
  alias_gib: float
  temp_gib: float
  code_gib: float
  total_gib: float               # argument + output - alias + temp + code
  hbm_gib: float | None          # per device; None: unknown (CPU)
  compile_s: float
  # Set when XLA refused to compile for lack of HBM: its own figure; the sizes above are then
  # lower bounds (temporaries only, the rest unknown).
  oom: str = ""

  @property
  def fits(self) -> bool | None:
    if self.oom:
      return False
    return None if self.hbm_gib is None else self.total_gib <= self.hbm_gib


def topology_devices(topology: str):
  """'v5e:4x4' (libtpu's topology names) -> TPU devices; 'cpu:N' -> N host CPU devices."""
  kind, _, shape = topology.partition(":")
  if kind == "cpu":
    import jax  # noqa: PLC0415
    n = int(shape) if shape.isdigit() else 0
    devices = jax.devices("cpu")
    if not 0 < n <= len(devices):
      raise ClowlabError(
          f"clowlab: --topology={topology}: {len(devices)} CPU devices exist. Use cpu:N with "
          f"N <= {len(devices)}, or start with XLA_FLAGS=--xla_force_host_platform_device_count=N"
          " (python -m clowlab.aot sets it for you when --topology=cpu:N is on the command "
          "line).")
    return devices[:n], None
  if kind not in HBM_GIB or not shape:
    raise ClowlabError(f"clowlab: --topology={topology!r} is not a TPU topology name; use "
                       f"<generation>:<chips>, e.g. v5e:4x4, v4:2x2x4, v5p:2x2x2 (generations: "
                       f"{', '.join(HBM_GIB)}), or cpu:N without libtpu.")
  try:
    from jax.experimental import topologies  # noqa: PLC0415
    desc = topologies.get_topology_desc(platform="tpu", topology_name=topology)
  except Exception as e:  # noqa: BLE001 - libtpu missing or a name it does not know
    raise ClowlabError(
        f"clowlab: cannot describe TPU topology {topology!r} ({str(e).splitlines()[0][:200]}). "
        "Install libtpu (`pip install libtpu`) and use a topology name it knows (e.g. v5e:4x4, "
        "v4:2x2x4), or check on host CPU devices with --topology=cpu:8.") from None
  return list(desc.devices), float(HBM_GIB[kind])


def encoder_config(cfg):
  """The architecture the run would train, without any weights or tokenizer training:
  init_from's config.json (an HF dir) or checkpoint meta (a clowlab workdir), else config.model
  with the vocabulary size of `tokenizer: spm:N | chars:N` (or an HF tokenizer dir's)."""
  from clowlab.convert import loading  # noqa: PLC0415
  from clowlab.models import encoder as enc  # noqa: PLC0415
  overrides = dict(cfg.get("model", {}) or {})
  src = cfg.get("init_from", "") or ""
  if src:
    ecfg, where = loading.encoder_config(src), f"init_from {src}"
    from clowlab import train  # noqa: PLC0415
    return ecfg.replace(**{k: v for k, v in overrides.items()
                           if k in train.IMPORTED_MODEL_OVERRIDES}), where
  tok = cfg.get("tokenizer", "") or ""
  if tok.startswith(("spm:", "chars:")):
    overrides.setdefault("vocab_size", int(tok.split(":")[1]))
    where = f"config.model, vocab from tokenizer={tok}"
  elif tok:
    from clowlab.data import tokenizers  # noqa: PLC0415
    t = tokenizers.load_tokenizer(tok)
    overrides.setdefault("vocab_size", t.vocab_size)
    overrides.setdefault("pad_token_id", t.pad_id)
    where = f"config.model, vocab from {tok}"
  else:
    where = "config.model (BERT-base defaults: no init_from here)"
  return enc.EncoderConfig.from_dict(overrides), where


def check(cfg, topology: str, name: str = "") -> Report:
  """Lowers and compiles cfg's train step for `topology`; the per-device memory of the result."""
  import jax  # noqa: PLC0415

  from clowlab import config_check, methods, sharding, train_state  # noqa: PLC0415
  config_check.check(cfg)
  method = methods.get(cfg.method)
  if method.batch_spec is None:
    raise ClowlabError(f"clowlab: method {cfg.method} has no batch_spec; it cannot be compiled "
                       "ahead of time.")
  devices, hbm = topology_devices(topology)
  mesh = sharding.make_mesh(dict(cfg.get("mesh", {}) or {}) or None, devices)
  dp = sharding.data_parallel_size(mesh)
  if cfg.batch_size % dp:
    raise ClowlabError(f"clowlab: --config.batch_size={cfg.batch_size} is not divisible by the "
                       f"{dp} data-parallel devices of mesh {dict(mesh.shape)} on {topology}.")
  ecfg, where = encoder_config(cfg)
  tx, lr_fn = train_state.optimizer_for(method, ecfg, cfg)
  state, s_shard = train_state.abstract_state(method, ecfg, cfg, tx, mesh)
  batch_shard = lambda x: sharding.batch_sharding(mesh) if x.ndim else sharding.replicated(mesh)
  batch = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=batch_shard(x)),
      method.batch_spec(cfg, ecfg))
  step = train_state.jit_train_step(method, ecfg, cfg, tx, lr_fn, s_shard)
  t0 = time.perf_counter()
  oom = ""
  with jax.set_mesh(mesh):  # methods' sharded losses (jax.shard_map) read the mesh
    lowered = step.lower(state, batch)
    try:
      compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:
      # XLA:TPU refuses a program whose buffers cannot fit: that is this check's answer, not a
      # crash. Its message names what the temporaries alone would need.
      need = re.search(r"HLO temporaries \(([\d.]+)G\)", str(e))
      if "CompileTimeHbmOom" not in str(e) or not need:
        raise
      compiled, oom = None, " ".join(str(e).split("HLO module")[0].split())
  compile_s = time.perf_counter() - t0
  if compiled is None:
    arg = out = alias = code = 0.0
    temp = float(need.group(1))  # XLA's "G" = GiB
  else:
    mem = compiled.memory_analysis()
    get = lambda k: float(getattr(mem, k, 0) or 0) / GIB  # noqa: E731
    arg, out, alias, temp = (get(f"{k}_size_in_bytes") for k in ("argument", "output", "alias",
                                                                  "temp"))
    code = get("generated_code_size_in_bytes")
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state["params"]))
  first = jax.tree_util.tree_leaves(batch)[0]
  return Report(
      config=name or cfg.method, method=cfg.method, topology=topology, devices=len(devices),
      mesh={k: int(v) for k, v in mesh.shape.items()},
      model=f"{ecfg.num_layers}x{ecfg.hidden_size}, vocab {ecfg.vocab_size} ({where})",
      params=n_params, batch=f"{cfg.batch_size}x{cfg.seq_len}" if first.ndim > 1 and
      first.shape[1] == cfg.seq_len else f"{cfg.batch_size} rows",
      argument_gib=arg, output_gib=out, alias_gib=alias, temp_gib=temp, code_gib=code,
      total_gib=arg + out - alias + temp + code, hbm_gib=hbm, compile_s=compile_s, oom=oom)


def markdown(reports: list[Report]) -> str:
  head = ("| config | topology | mesh | model | params | batch | args GiB | temp GiB | "
          "total GiB / device | HBM GiB | fits | compile s |\n" + "|---" * 12 + "|\n")
  rows = []
  for r in reports:
    mesh = " ".join(f"{k}={v}" for k, v in r.mesh.items())
    fits = {None: "–", True: "yes", False: "**no**"}[r.fits]
    sizes = (f"{r.argument_gib:.2f} | {r.temp_gib:.2f} | {r.total_gib:.2f}" if not r.oom else
             f"? | ≥ {r.temp_gib:.2f} | ≥ {r.total_gib:.2f} (XLA: out of HBM)")
    rows.append(f"| {r.config} | {r.topology} ({r.devices}) | {mesh} | {r.model} | "
                f"{r.params / 1e6:.1f}M | {r.batch} | {sizes} | "
                f"{'–' if r.hbm_gib is None else f'{r.hbm_gib:g}'} | {fits} | {r.compile_s:.0f} |")
  return head + "\n".join(rows) + "\n"


# ----------------------------------------------------------------------------------------------
# Command line


def load_config(spec: str, overrides: list[str] = ()):
  """'configs/x.py[:variant]' and `--config.key=value` overrides -> the ConfigDict, parsed by
  ml_collections' config flag exactly as `clowlab.main` parses it (one fresh flag set per config,
  so --all can load several)."""
  from absl import flags  # noqa: PLC0415
  from ml_collections import config_flags  # noqa: PLC0415
  path = spec.split(":", 1)[0]
  if not os.path.isfile(path):
    raise ClowlabError(f"clowlab: --config={spec}: no such file {path}. Check the --config path "
                       "(relative to the current directory).")
  root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  if root not in sys.path:
    sys.path.insert(0, root)  # config files import configs.common
  fv = flags.FlagValues()
  holder = config_flags.DEFINE_config_file("config", None, flag_values=fv, lock_config=True)
  try:
    fv(["clowlab.aot", f"--config={spec}", *overrides])
    return holder.value
  except (flags.Error, KeyError, AttributeError) as e:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    raise ClowlabError(f"clowlab: --config={spec} {' '.join(overrides)}: {lines[-1] if lines else e}"
                       ". Use keys and value types the config file defines.") from None


def main(argv: list[str] | None = None) -> int:
  import argparse  # noqa: PLC0415
  p = argparse.ArgumentParser(prog="python -m clowlab.aot", description=__doc__.split("\n\n")[0])
  p.add_argument("--config", action="append", default=[],
                 help="configs/<method>.py[:variant]; repeat for several")
  p.add_argument("--all", action="store_true",
                 help="every method's default (pod) config under configs/")
  p.add_argument("--configs_dir", default="configs")
  p.add_argument("--topology", default="v5e:4x4",
                 help="TPU topology (libtpu), e.g. v5e:4x4, v4:2x2x4; or cpu:N")
  p.add_argument("--json", default="", help="also write the reports to this JSON file")
  args, rest = p.parse_known_args(argv)
  overrides = [a for a in rest if a.startswith("--config.")]
  unknown = [a for a in rest if not a.startswith("--config.")]
  if unknown:
    p.error(f"unrecognised arguments: {' '.join(unknown)}")
  # `--all`: every registered method's config (configs/<name>.py), its default (pod) variant.
  from clowlab import methods  # noqa: PLC0415
  every = [os.path.join(args.configs_dir, f"{m}.py") for m in methods.METHODS]
  specs = list(args.config) + (every if args.all else [])
  if not specs:
    p.error("pass --config=configs/<method>.py[:variant] or --all")
  reports = []
  try:
    for spec in specs:
      cfg = load_config(spec, overrides)
      r = check(cfg, args.topology, name=os.path.basename(spec).replace(".py", ""))
      reports.append(r)
      if r.oom:
        print(f"clowlab.aot: {r.config} on {r.topology}: DOES NOT FIT: {r.oom}", flush=True)
        continue
      print(f"clowlab.aot: {r.config} on {r.topology}: {r.total_gib:.2f} GiB per device "
            f"(args {r.argument_gib:.2f}, temp {r.temp_gib:.2f})"
            + ("" if r.hbm_gib is None else f" of {r.hbm_gib:g} GiB HBM: "
               + ("fits" if r.fits else "DOES NOT FIT"))
            + f"; compiled in {r.compile_s:.0f} s", flush=True)
  except ClowlabError as e:
    print(e, file=sys.stderr)
    return 2
  print()
  print(markdown(reports), end="")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump([{**dataclasses.asdict(r), "fits": r.fits} for r in reports], f, indent=1)
  return 0 if all(r.fits is not False for r in reports) else 1


def _early_cpu_devices(argv: list[str]) -> None:
  """--topology=cpu:N needs N host devices, which XLA reads only before jax starts."""
  for i, a in enumerate(argv):
    value = a.split("=", 1)[1] if a.startswith("--topology=") else (
        argv[i + 1] if a == "--topology" and i + 1 < len(argv) else "")
    if value.startswith("cpu:") and value[4:].isdigit():
      flag = f"--xla_force_host_platform_device_count={value[4:]}"
      if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()


if __name__ == "__main__":
  _early_cpu_devices(sys.argv[1:])
  sys.exit(main(sys.argv[1:]))
