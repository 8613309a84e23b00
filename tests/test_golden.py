"""Golden numbers a refactor must not change (nanodo's golden one-step metrics, maxtext's golden
shardings), for every registered method:

- the first two training steps' loss and metrics on a tiny version of the method's runlocal config
  (its own tokenizer built from the demo data, fixed seed, 8 fake devices): data reading,
  tokenizing, masking, initialisation, the loss and the gradient norm, end to end;
- the shardings of the whole train state (params, optimiser moments, method state) of the
  method's pod-size default config on an 8-way fsdp mesh, built without data or weights.

A deliberate change: regenerate with CLOWLAB_UPDATE_GOLDEN=1 and review the diff.
"""
import json
import math
import os
import pathlib

import jax
import pytest

from clowlab import aot, methods, sharding, train, train_state

from tiny import REPO, override

GOLDEN = pathlib.Path(__file__).parent / "golden"
UPDATE = bool(os.environ.get("CLOWLAB_UPDATE_GOLDEN"))
# Float32 on CPUs of different vector widths reduces in different orders: a few ulps per op,
# compounded over the step. A real change of numbers moves them by far more.
RTOL = 2e-4
# What train.py logs about the machine (timings, throughput), not about the method.
MACHINE_DEPENDENT = {"step", "time", "examples_per_s", "ms_per_step", "tokens_per_s", "mfu"}


def _config_module(method):
  import importlib  # noqa: PLC0415
  return importlib.import_module(f"configs.{method}")


def _tiny_first_step_cfg(method, tmp_path):
  # The tokenizer is the runlocal one (spm:N or chars:N), built from the demo data.
  return override(
      _config_module(method).get_config("runlocal"), total_steps=2, batch_size=16, seq_len=32,
      log_every=1, eval_every=0, checkpoint_every=1000, mode="train", progress_bar=False,
      async_checkpoint=False, cache_dir=str(tmp_path / "cache"), mesh={"data": 2, "fsdp": 4},
      model={"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
             "max_position_embeddings": 32, "compute_dtype": "float32", "remat": False,
             "scan_layers": False},
      **{"optim.warmup_steps": 0})  # a non-zero lr from step 1: step 2 sees the update


def _first_steps(method, tmp_path):
  """{"step<N>/<metric>": value} for steps 1 and 2: the first loss and gradient, and the loss
  after one optimiser update."""
  cfg = _tiny_first_step_cfg(method, tmp_path)
  w = tmp_path / "w"
  train.train(cfg, str(w))
  rows = [json.loads(line) for line in (w / "metrics.jsonl").read_text().splitlines()]
  out = {}
  for step in (1, 2):
    row = next(r for r in rows if r.get("step") == step and r.get("split", "train") == "train")
    out.update({f"step{step}/{k}": v for k, v in sorted(row.items())
                if isinstance(v, (int, float)) and k not in MACHINE_DEPENDENT})
  return out


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(methods.METHODS))
def test_golden_first_step(method, tmp_path):
  got = _first_steps(method, tmp_path)
  path = GOLDEN / f"first_step_{method}.json"
  if UPDATE:
    path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
  want = json.loads(path.read_text())
  assert sorted(got) == sorted(want), f"{method}: logged metrics changed"
  assert math.isfinite(got["step1/loss"]) and got["step2/loss"] != got["step1/loss"]
  bad = {k: (got[k], want[k]) for k in want
         if not math.isclose(got[k], want[k], rel_tol=RTOL, abs_tol=1e-6)}
  assert not bad, f"{method}: first-step numbers changed (got, golden): {bad}"


def _state_table(cfg):
  method = methods.get(cfg.method)
  mesh = sharding.make_mesh({"data": 1, "fsdp": 8})
  ecfg, _ = aot.encoder_config(cfg)
  tx, _ = train_state.optimizer_for(method, ecfg, cfg)
  state, _ = train_state.abstract_state(method, ecfg, cfg, tx, mesh)
  flat = jax.tree_util.tree_flatten_with_path(state)[0]
  return {sharding._path_str(p): f"{tuple(x.shape)} {x.sharding.spec}" for p, x in flat}


@pytest.mark.parametrize("method", sorted(methods.METHODS))
def test_golden_state_shardings(method):
  """The pod-size default's whole train state: shape and partition spec of every array."""
  # As clowlab.aot compiles it: without init_from, config.model's architecture (BERT-base).
  table = _state_table(_config_module(method).get_config())
  path = GOLDEN / f"state_shardings_{method}.json"
  if UPDATE:
    path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
  want = json.loads(path.read_text())
  changed = {k: (table.get(k), want.get(k)) for k in set(table) | set(want)
             if table.get(k) != want.get(k)}
  assert not changed, f"{method}: state shardings changed (now, golden): {changed}"
  # The big matrices are sharded, the small vectors replicated.
  assert "'fsdp'" in table["params/encoder/embeddings/word"]
  assert table["params/encoder/layers/attn_ln/scale"].endswith("P()")


def test_every_method_has_its_config_and_goldens():
  """One list of methods: the registry. Each has configs/<name>.py and golden files."""
  for name in methods.METHODS:
    assert (REPO / "configs" / f"{name}.py").is_file(), name
    if not UPDATE:
      assert (GOLDEN / f"first_step_{name}.json").is_file(), name
      assert (GOLDEN / f"state_shardings_{name}.json").is_file(), name
