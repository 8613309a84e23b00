"""Fuzzed checkpoints (hypothesis): flipped bits, truncated, deleted and added files, deleted
items, a damaged meta JSON, a step directory replaced by a file -- in the latest step, or in
both steps of a tiny MLM run.

Contract per generated case:
  (a) `Manager.restore(step=latest, fallback=False)` returns everything bit-identical to the
      original (params, train_state, data state, meta) -- the damage hit nothing that is read --
      or raises one `ClowlabError` naming the checkpoint directory; never another exception,
      never different values;
  (b) `Manager.restore()` returns the latest step bit-identical, or falls back to step 2
      (bit-identical to step 2's original) with a warning, or, when no step is readable, raises
      `ClowlabError` saying so and what to do;
and through the user paths: `train.train` resumes a workdir with a damaged latest step from the
step before and ends bitwise where the undamaged run ended; evaluate, export (`python -m
clowlab.convert export`) and `embed.load` on a workdir whose only step is damaged raise
`ClowlabError` (the CLI exits 2 with the message, no traceback).

Every case is counted with `fuzzlog.record` (printed under "fuzzed cases" at the end of the run).
"""
import contextlib
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import fuzzlog
from clowlab import checkpoint, train
from clowlab import workdir as workdir_lib
from clowlab.errors import ClowlabError

from tiny import tiny_cfg

LATEST, PREVIOUS = 4, 2
ITEMS = ("params", "train_state", "meta", "data")


def _cfg():
  return tiny_cfg(total_steps=LATEST, checkpoint_every=2, keep_checkpoints=2,
                  async_checkpoint=False)


def _numpy(tree):
  return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def _bit_identical(a, b) -> bool:
  la, ta = jax.tree_util.tree_flatten(a)
  lb, tb = jax.tree_util.tree_flatten(b)
  return ta == tb and all(
      x.dtype == y.dtype and x.shape == y.shape and
      np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes()
      for x, y in zip(la, lb))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """One tiny MLM run: checkpoints at steps 2 and 4 (params, train_state, data, meta), and what
  each restores to, as numpy, for comparison."""
  w = tmp_path_factory.mktemp("fuzz_ckpt") / "run"
  out = train.train(_cfg(), str(w))
  state = out["state"]
  spec = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)  # noqa: E731
  targets = {"params_target": jax.tree_util.tree_map(spec, state["params"]),
             "train_state_target": jax.tree_util.tree_map(
                 spec, {k: v for k, v in state.items() if k != "params"})}
  original = {}
  with checkpoint.Manager(w, read_only=True, max_to_keep=None) as m:
    assert m.all_steps() == [PREVIOUS, LATEST]
    for s in (PREVIOUS, LATEST):
      original[s] = _comparable(m.restore(s, fallback=False, **targets))
  assert _bit_identical(original[LATEST]["params"], _numpy(state["params"]))
  return Run(workdir=w, targets=targets, original=original)


class Run(dict):
  """The fixture's dict, printed short (hypothesis prints the arguments of a failing case)."""

  def __init__(self, **kw):
    super().__init__(**kw)

  def __repr__(self):
    return f"Run({self['workdir']})"

  def _repr_pretty_(self, p, cycle):
    p.text(repr(self))


def _comparable(r):
  return {"step": r["step"], "params": _numpy(r["params"]),
          "train_state": _numpy(r["train_state"]), "data": r["data"], "meta": r["meta"]}


def _same(r, o) -> bool:
  return (r["step"] == o["step"] and r["data"] == o["data"] and r["meta"] == o["meta"]
          and _bit_identical(r["params"], o["params"])
          and _bit_identical(r["train_state"], o["train_state"]))


@contextlib.contextmanager
def _warnings():
  """The messages logged at WARNING or above while the block runs."""
  got = []

  class H(logging.Handler):
    def emit(self, record):
      got.append(record.getMessage())

  h = H(logging.WARNING)
  root = logging.getLogger()
  root.addHandler(h)
  try:
    yield got
  finally:
    root.removeHandler(h)


# ----------------------------------------------------------------------------------------------
# Corruptions: (class, parameters); applied to one step directory


def _files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in step_dir.rglob("*") if p.is_file())


_pick = st.integers(0, 2**31)  # an index or offset, taken modulo what exists
_META_EDITS = ("invalid JSON", "empty file", "JSON list", "JSON null", "format_version changed",
               "format_version removed", "fingerprints removed", "a fingerprint altered",
               "fingerprints not a dict", "config value altered", "other format version")

corruptions = st.one_of(
    st.tuples(st.just("flip bits"), _pick, st.lists(_pick, min_size=1, max_size=8)),
    st.tuples(st.just("truncate file"), _pick, st.one_of(st.just(0), _pick)),
    st.tuples(st.just("delete file"), _pick),
    st.tuples(st.just("delete item"), st.sampled_from(ITEMS)),
    st.tuples(st.just("meta"), st.sampled_from(_META_EDITS), _pick),
    st.tuples(st.just("garbage file"), st.sampled_from(("checkpoints", "step", "params",
                                                        "train_state", "meta", "data")),
              st.sampled_from(("junk", "_METADATA.bak", ".hidden", "0")), st.binary(max_size=64)),
    st.tuples(st.just("step is a file"), st.binary(max_size=64)),
)


def _corrupt(step_dir: pathlib.Path, c) -> str:
  """Applies corruption c to step_dir; returns a description (for failure messages)."""
  kind = c[0]
  if kind in ("flip bits", "truncate file", "delete file"):
    files = _files(step_dir)
    f = files[c[1] % len(files)]
    data = bytearray(f.read_bytes())
    what = f"{kind} {f.relative_to(step_dir)} ({len(data)} bytes)"
    if kind == "flip bits":
      if not data:
        return what + ": empty, untouched"
      bits = sorted({b % (8 * len(data)) for b in c[2]})
      for b in bits:
        data[b // 8] ^= 1 << (b % 8)
      f.write_bytes(bytes(data))
      return what + f" bits {bits}"
    if kind == "truncate file":
      n = c[2] % max(len(data), 1)
      f.write_bytes(bytes(data[:n]))
      return what + f" to {n}"
    f.unlink()
    return what
  if kind == "delete item":
    shutil.rmtree(step_dir / c[1])
    return f"delete {c[1]}/"
  if kind == "meta":
    f = step_dir / "meta" / "metadata"
    meta = json.loads(f.read_text())
    edit = c[1]
    if edit == "invalid JSON":
      f.write_text(f.read_text()[:c[2] % 200] + "}{")
    elif edit == "empty file":
      f.write_text("")
    elif edit == "JSON list":
      f.write_text(json.dumps(list(meta)))
    elif edit == "JSON null":
      f.write_text("null")
    else:
      if edit == "format_version changed":
        meta["format_version"] = [2, 0, "1", None, 1.5][c[2] % 5]
      elif edit == "format_version removed":
        del meta["format_version"]
      elif edit == "fingerprints removed":
        del meta["fingerprints"]
      elif edit == "a fingerprint altered":
        fps = meta["fingerprints"]["params"]
        k = sorted(fps)[c[2] % len(fps)]
        fps[k] = (fps[k] + 1 + c[2]) % 2**32
      elif edit == "fingerprints not a dict":
        meta["fingerprints"] = [c[2]]
      elif edit == "config value altered":
        meta["encoder_config"]["hidden_dropout"] = 0.5
      elif edit == "other format version":  # a future clowlab wrote it: well-formed, checksummed
        meta["format_version"] = checkpoint.FORMAT_VERSION + 1
        del meta["meta_checksum"]
        meta["meta_checksum"] = checkpoint._json_checksum(meta)
      f.write_text(json.dumps(meta))
    return f"meta: {edit}"
  if kind == "garbage file":
    d = {"checkpoints": step_dir.parent, "step": step_dir}.get(c[1], step_dir / c[1])
    (d / c[2]).write_bytes(c[3])
    return f"garbage file {c[1]}/{c[2]}"
  if kind == "step is a file":
    shutil.rmtree(step_dir)
    step_dir.write_bytes(c[1])
    return "step directory replaced by a file"
  raise AssertionError(kind)


def _klass(c) -> str:
  return f"{c[0]}: {c[1]}" if c[0] in ("meta", "delete item") else c[0]


def _copy(run) -> pathlib.Path:
  """A fresh copy of the run's checkpoints (the examples of one test share no state)."""
  w = pathlib.Path(tempfile.mkdtemp(prefix="fuzz_ckpt_"))
  shutil.copytree(run["workdir"] / checkpoint.CHECKPOINT_SUBDIR, w / checkpoint.CHECKPOINT_SUBDIR)
  return w


def _fuzz(max_examples: int):
  return settings(max_examples=max_examples,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                  phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])


def _check(run, latest_c, previous_c=None) -> str:
  """Applies the corruption(s), checks contracts (a) and (b); returns the outcome."""
  w = _copy(run)
  try:
    d = checkpoint.checkpoint_dir(w)
    what = _corrupt(d / str(LATEST), latest_c)
    if previous_c is not None:
      what += " + step 2: " + _corrupt(d / str(PREVIOUS), previous_c)
    orig, tg = run["original"], run["targets"]
    # (a) the latest step, no fallback
    with checkpoint.Manager(w, read_only=True, max_to_keep=None) as m:
      try:
        r = m.restore(LATEST, fallback=False, **tg)
        assert _same(_comparable(r), orig[LATEST]), f"{what}: restored different values"
        latest_ok = True
      except ClowlabError as e:
        assert str(d) in str(e), (what, str(e))
        assert len(str(e)) < 1500, (what, str(e))
        assert any(fix in str(e) for fix in ("backup", "Pass one of", "clowlab version")), (
            what, str(e))
        latest_ok = False
    # (b) the default: latest readable, with a warning for each step skipped. (When the latest
    # restored intact above, restore() reads the same step the same way: not repeated, for time.)
    if latest_ok:
      return "unaffected (bit-identical)"
    other_version = ("meta", "other format version") in (latest_c[:2], (previous_c or ())[:2])
    with _warnings() as warned, checkpoint.Manager(w, read_only=True, max_to_keep=None) as m:
      try:
        r = _comparable(m.restore(**tg))
      except ClowlabError as e:
        msg = str(e)
        assert str(d) in msg, (what, msg)
        if "format version" in msg:
          assert other_version, (what, msg)
          assert "format version 2; this clowlab reads 1" in msg and "clowlab version" in msg
          return "rejected (other format version)"
        assert previous_c is not None, f"{what}: step 2 is intact but restore() raised {msg}"
        assert "no readable checkpoint" in msg and "backup" in msg, (what, msg)
        return "rejected (no readable step)"
    assert latest_c[:2] != ("meta", "other format version"), (
        f"{what}: a checkpoint of another format version was restored")
    assert _same(r, orig[PREVIOUS]), f"{what}: fell back, but not to step 2's values"
    assert any(f"{d}/{LATEST}" in x or f"step {LATEST} in {d}" in x for x in warned), (what, warned)
    return "fell back to previous"
  finally:
    shutil.rmtree(w, ignore_errors=True)


def _every_meta_edit_and_item(f):
  """The named classes tried at least once each, on top of the generated cases."""
  for edit in _META_EDITS:
    f = example(c=("meta", edit, 7))(f)
  for item in ITEMS:
    f = example(c=("delete item", item))(f)
  return f


@_fuzz(40)
@given(c=corruptions)
@_every_meta_edit_and_item
def test_corrupt_latest_step(run, c):
  fuzzlog.record(f"checkpoint: {_klass(c)}", _check(run, c))


@_fuzz(16)
@given(c=corruptions, c2=corruptions)
def test_corrupt_both_steps(run, c, c2):
  fuzzlog.record(f"checkpoint: both steps ({c[0]})", _check(run, c, c2))


# ----------------------------------------------------------------------------------------------
# User paths


def _full_copy(run, tmp_path, name) -> pathlib.Path:
  w = tmp_path / name
  shutil.copytree(run["workdir"], w, ignore=shutil.ignore_patterns(workdir_lib.LOCK_FILE))
  return w


@pytest.mark.slow
def test_training_resumes_from_the_step_before_a_damaged_latest(run, tmp_path):
  w = _full_copy(run, tmp_path, "resume")
  d = checkpoint.checkpoint_dir(w)
  (d / str(LATEST) / "meta" / "metadata").write_text("{not json")  # read first, by read_meta
  with _warnings() as warned:
    out = train.train(_cfg(), str(w))
  assert int(out["state"]["step"]) == LATEST
  assert any("falling back" in x for x in warned) and any("moved" in x for x in warned), warned
  assert (d / f"{LATEST}.unreadable").is_dir()  # set aside for inspection, not deleted
  # Resumed from step 2 with its data state: bitwise where the undamaged run ended.
  assert _bit_identical(_numpy(out["state"]["params"]), run["original"][LATEST]["params"])
  with checkpoint.Manager(w, read_only=True, max_to_keep=None) as m:
    assert m.all_steps() == [PREVIOUS, LATEST]
    r = _comparable(m.restore(LATEST, fallback=False, **run["targets"]))
  o = run["original"][LATEST]
  assert r["data"] == o["data"] and _bit_identical(r["train_state"], o["train_state"])
  assert r["meta"]["source"] == f"resumed from {w}"
  fuzzlog.record("checkpoint: train.train resume, latest meta damaged", "fell back to previous")


@pytest.fixture(scope="module")
def only_step_damaged(run, tmp_path_factory):
  """Workdirs whose only checkpoint step is damaged, one per kind of damage."""
  out = {}
  root = tmp_path_factory.mktemp("only_step")
  for name, damage in [
      ("truncated params", ("truncate file", 0, 0)),
      ("meta invalid JSON", ("meta", "invalid JSON", 10)),
      ("meta deleted", ("delete item", "meta")),
  ]:
    w = root / name.replace(" ", "_")
    shutil.copytree(run["workdir"], w, ignore=shutil.ignore_patterns(workdir_lib.LOCK_FILE))
    d = checkpoint.checkpoint_dir(w)
    shutil.rmtree(d / str(PREVIOUS))
    if damage[0] == "truncate file":  # every array chunk of params
      for f in _files(d / str(LATEST) / "params"):
        if "/d/" in str(f):
          f.write_bytes(b"")
    else:
      _corrupt(d / str(LATEST), damage)
    out[name] = w
  return out


def _assert_unreadable(e, w):
  msg = str(e)
  assert f"no readable checkpoint in {checkpoint.checkpoint_dir(w)} (step {LATEST}: " in msg, msg
  assert "backup" in msg and len(msg) < 1500, msg


def test_evaluate_export_and_embed_refuse_a_damaged_only_step(only_step_damaged, tmp_path):
  from clowlab import embed, evaluate  # noqa: PLC0415
  from clowlab.convert import workdir as convert_workdir  # noqa: PLC0415
  for name, w in only_step_damaged.items():
    for path, call in [
        ("evaluate", lambda: evaluate.evaluate_workdir(tiny_cfg(mode="eval"), str(w))),
        ("export", lambda: convert_workdir.export_workdir(w, tmp_path / "out" / w.name)),
        ("embed.load", lambda: embed.load(w)),
    ]:
      with pytest.raises(ClowlabError) as e:
        call()
      _assert_unreadable(e.value, w)
      assert not (tmp_path / "out" / w.name).exists()
      fuzzlog.record(f"checkpoint: {path}, only step ({name})", "rejected")


@pytest.mark.slow
def test_export_cli_on_a_damaged_only_step_exits_2_with_one_message(only_step_damaged, tmp_path):
  """No traceback either from orbax's abandoned array reads after a failed one."""
  for name in ("truncated params", "meta invalid JSON"):
    w = only_step_damaged[name]
    r = subprocess.run([sys.executable, "-m", "clowlab.convert", "export", f"--workdir={w}",
                        f"--out={tmp_path / 'out'}"], capture_output=True, text=True,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "never retrieved" not in r.stderr, r.stderr[-3000:]
    _assert_unreadable(r.stderr.strip().splitlines()[-1], w)  # above it: orbax's absl log lines
    assert not (tmp_path / "out").exists()
    fuzzlog.record(f"checkpoint: convert export CLI, only step ({name})", "rejected")
