"""Bad configs, fuzzed (issue 10): unknown keys, wrong types, impossible shapes, meshes larger
than the devices, batches that do not divide. Each must be one ClowlabError naming the key,
raised before any compile (train_state.init_state is the first one), never a jax traceback."""
import copy
import os
import subprocess
import sys

import ml_collections
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

import fuzzlog
from clowlab import config_check, train, train_state
from clowlab.errors import ClowlabError
from tiny import REPO, tiny_cfg

SCHEMA = config_check.load_schema()
BASE = tiny_cfg().to_dict()  # the tiny MLM run of the engine tests: a valid config
IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True)


def _cfg(d):
  return ml_collections.ConfigDict(d)


def _rejected(klass, d, *needles):
  with pytest.raises(ClowlabError) as e:
    config_check.check(_cfg(d))
  msg = str(e.value)
  for n in needles:
    assert n in msg, (n, msg)
  fuzzlog.record(f"config: {klass}", "rejected")
  return msg


def test_schema_is_what_the_shipped_configs_use():
  """config_schema.json == the keys and types of every variant of every configs/*.py."""
  built = config_check.build_schema(REPO / "configs")
  if os.environ.get("CLOWLAB_UPDATE_GOLDEN"):
    config_check.main([str(REPO / "configs")])
  assert built == config_check.load_schema(), (
      "configs/ and clowlab/config_schema.json differ: run `python -m clowlab.config_check` "
      "after adding or retyping a config key.")


def test_every_shipped_variant_passes():
  import importlib  # noqa: PLC0415
  n = 0
  for path in sorted((REPO / "configs").glob("*.py")):
    mod = importlib.import_module(f"configs.{path.stem}")
    for v in getattr(mod, "VARIANTS", ()):
      config_check.check(mod.get_config(v))
      n += 1
  assert n >= 30, n


_SECTIONS = sorted({k.rpartition(".")[0] for k in SCHEMA["mlm"]} | {"model"})


@settings(max_examples=60)
@given(section=st.sampled_from(_SECTIONS), name=IDENT)
def test_unknown_keys_are_named(section, name):
  d = copy.deepcopy(BASE)
  node = d
  for p in [p for p in section.split(".") if p]:
    node = node[p]
  if name in node:
    return
  node[name] = 1
  key = f"{section}.{name}" if section else name
  _rejected("unknown key", d, repr(key))


_LEAVES = sorted(k for k, t in SCHEMA["mlm"].items() if t != ["none"] and t != ["dict"])
_VALUES = {
    "str": st.text(max_size=5),
    "int": st.integers(-3, 3),
    "float": st.floats(0.5, 3.5).filter(lambda x: x != int(x)),
    "bool": st.booleans(),
    "list": st.lists(st.integers(0, 3), max_size=2),
    "dict": st.fixed_dictionaries({"a": st.integers(0, 3)}),
    "none": st.none(),
}
_PROBES = {"str": "x", "int": 2, "float": 1.5, "bool": True, "list": [1], "dict": {"a": 1},
           "none": None}


@settings(max_examples=80, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data(), key=st.sampled_from(_LEAVES))
def test_wrong_types_are_named(data, key):
  allowed = SCHEMA["mlm"][key]
  bad_kinds = [k for k, probe in _PROBES.items() if not config_check._type_ok(probe, allowed)]
  kind = data.draw(st.sampled_from(bad_kinds), label="kind")
  value = data.draw(_VALUES[kind], label="value")
  if config_check._type_ok(value, allowed):
    return
  d = copy.deepcopy(BASE)
  node = d
  *parents, leaf = key.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
  _rejected("wrong type", d, key)


@settings(max_examples=40)
@given(hidden=st.integers(8, 96), heads=st.integers(1, 12))
def test_heads_not_dividing_hidden(hidden, heads):
  d = copy.deepcopy(BASE)
  d["model"].update(hidden_size=hidden, num_heads=heads)
  if hidden % heads == 0:
    config_check.check(_cfg(d))
    fuzzlog.record("config: heads | hidden (valid)", "accepted")
  else:
    _rejected("heads not dividing hidden", d, f"hidden_size={hidden}", f"num_heads={heads}")


_POSITIVE = [k for k, _, _ in config_check._RANGES]


@settings(max_examples=40)
@given(key=st.sampled_from(_POSITIVE), value=st.sampled_from([-1, -100, 0]))
def test_impossible_values(key, value):
  d = copy.deepcopy(BASE)
  node = d
  *parents, leaf = key.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
  try:
    config_check.check(_cfg(d))
  except ClowlabError as e:
    assert key in str(e)
    fuzzlog.record("config: out-of-range value", "rejected")
    return
  assert value == 0 and key in ("eval_every", "keep_checkpoints", "max_train_seconds",
                                "preemption_grace_s", "num_devices", "optim.warmup_steps",
                                "optim.weight_decay", "optim.clip_norm", "optim.b1",
                                "optim.b2"), key
  fuzzlog.record("config: out-of-range value (0 is valid there)", "accepted")


@settings(max_examples=20)
@given(seq=st.integers(33, 4096))
def test_seq_len_over_positions(seq):
  d = copy.deepcopy(BASE)
  d["seq_len"] = seq
  _rejected("seq_len > max_position_embeddings", d, f"seq_len={seq}")


@settings(max_examples=20)
@given(bs=st.integers(1, 64), accum=st.integers(2, 8))
def test_batch_not_divisible_by_grad_accum(bs, accum):
  d = copy.deepcopy(BASE)
  d.update(batch_size=bs, grad_accum_steps=accum)
  if bs % accum:
    _rejected("batch not divisible by grad_accum_steps", d, f"grad_accum_steps={accum}")


# --- through train(): the device-dependent checks, all before the first compile


@pytest.fixture
def no_compile(monkeypatch):
  def boom(*a, **k):
    raise AssertionError("train() compiled before rejecting the config")
  monkeypatch.setattr(train_state, "init_state", boom)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  d = tmp_path_factory.mktemp("tok")
  train.resolve_tokenizer(tiny_cfg(), str(d))
  return str(d / "tokenizer")


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.integers(1, 16), fsdp=st.integers(1, 16), bs=st.integers(1, 64))
@example(data=2, fsdp=4, bs=16).via("valid: reaches the compile")
@example(data=8, fsdp=1, bs=12).via("batch the data axis does not divide")
@example(data=4, fsdp=4, bs=16).via("16 devices wanted")
def test_mesh_and_batch_through_train(tmp_path_factory, tok, no_compile, data, fsdp, bs):
  """8 devices: a mesh needing more (or fewer) fails naming the mesh; a batch the data axis
  does not divide fails naming batch_size; what is left reaches the first compile."""
  w = str(tmp_path_factory.mktemp("w"))
  cfg = tiny_cfg(tokenizer=tok, batch_size=bs)
  cfg.mesh = {"data": data, "fsdp": fsdp}
  try:
    train.train(cfg, w)
  except ClowlabError as e:
    if data * fsdp != 8:
      assert "mesh" in str(e) and "8 are available" in str(e), str(e)
      fuzzlog.record("config: mesh larger/smaller than the devices (via train)", "rejected")
    else:
      assert bs % data and f"batch_size={bs}" in str(e), str(e)
      fuzzlog.record("config: batch not divisible by the data axis (via train)", "rejected")
  except AssertionError as e:
    assert data * fsdp == 8 and bs % data == 0 and "compiled" in str(e)
    fuzzlog.record("config: valid mesh and batch (via train)", "reached compile")
  else:
    pytest.fail("train() ran with init_state patched out")


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=st.sampled_from(["unknown", "type", "heads", "seq"]), name=IDENT)
def test_config_errors_come_before_any_work(tmp_path_factory, no_compile, mutation, name):
  """Through train(): rejected before the workdir is even created."""
  w = tmp_path_factory.mktemp("w") / "run"
  d = copy.deepcopy(BASE)
  if mutation == "unknown":
    d["optim"][name + "_x"] = 1
  elif mutation == "type":
    d["total_steps"] = name
  elif mutation == "heads":
    d["model"].update(hidden_size=30, num_heads=4)
  else:
    d["seq_len"] = 10_000
  with pytest.raises(ClowlabError):
    train.train(_cfg(d), str(w))
  assert not w.exists()
  fuzzlog.record("config: via train()", "rejected before any work")


@pytest.mark.parametrize("args,needle", [
    (["--config=configs/mlm.py:runlocal", "--config.optim.lrr=1"], "did you mean 'lr'"),
    (["--config=configs/mlm.py:runlocal", "--config.batch_size=abc"], "--config.batch_size=abc"),
    (["--config=configs/mlm.py:runlocal", "--config.model.num_heads=3"], "num_heads=3"),
    (["--config=configs/mlm.py:nope"], "unknown variant 'nope'"),
    (["--config=configs/nope.py"], "configs/nope.py"),
])
def test_cli_prints_one_line_no_traceback(tmp_path, args, needle):
  r = subprocess.run([sys.executable, "-m", "clowlab.main", *args, f"--workdir={tmp_path}/w"],
                     cwd=str(REPO), capture_output=True, text=True, timeout=120)
  assert r.returncode == 2, r.stderr[-2000:]
  assert "Traceback" not in r.stderr and needle in r.stderr, r.stderr[-2000:]
  fuzzlog.record("config: command line", "rejected in one line")
