"""Faults injected into real training runs (issue 10): kill anywhere, preemption, full disk,
unwritable workdir, NaN/Inf in a batch or a gradient.

The subprocess runs are `python -m clowlab.main` wrapped by tests/fault_worker.py, which fires
one fault at a moment the test picks. CLOWLAB_FAULT_SEED (default 0) picks the kill moments;
any seed must pass.
"""
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fuzzlog
from clowlab import checkpoint, methods, preemption, train
from clowlab.errors import ClowlabError
from tiny import REPO, tiny_cfg

TOTAL = 24
# The tiny MLM run of tests/tiny.py, as command-line overrides of configs/mlm.py:runlocal.
RUN = {"total_steps": TOTAL, "checkpoint_every": 3, "progress_bar": False, "batch_size": 16,
       "seq_len": 32, "eval_every": 0, "mode": "train", "model.hidden_size": 32,
       "model.num_layers": 1, "model.num_heads": 2, "model.intermediate_size": 64,
       "model.max_position_embeddings": 32, "optim.warmup_steps": 2, "mesh.data": 2,
       "mesh.fsdp": 4, "log_every": 1, "async_checkpoint": True}


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  d = tmp_path_factory.mktemp("tok")
  train.resolve_tokenizer(tiny_cfg(), str(d))
  return str(d / "tokenizer")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  """Subprocess environment: 8 CPU devices (conftest) and a shared compilation cache, so the
  many short runs do not each recompile the same step."""
  e = dict(os.environ)
  e.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
           JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return e


def _args(fault, workdir, tok, **kw):
  run = {**RUN, "tokenizer": tok, **kw}
  return ([sys.executable, str(REPO / "tests" / "fault_worker.py"), fault, "--",
           "--config=configs/mlm.py:runlocal", f"--workdir={workdir}"]
          + [f"--config.{k}={v}" for k, v in run.items()])


def _run(fault, workdir, tok, env, timeout=300, **kw):
  return subprocess.run(_args(fault, workdir, tok, **kw), cwd=str(REPO), env=env,
                        capture_output=True, text=True, timeout=timeout)


def _params(workdir, step=None):
  params, _, s = checkpoint.restore(workdir, step)
  return jax.tree_util.tree_map(np.asarray, jax.device_get(params)), s


def _losses(workdir):
  out = {}
  for line in open(os.path.join(workdir, "metrics.jsonl")):
    row = json.loads(line)
    if "loss" in row:
      out[row["step"]] = row["loss"]  # steps re-run after a kill overwrite their first rows
  return out


def _assert_bitwise(a, b):
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def _check_checkpoints(workdir):
  """Every step orbax lists is complete: its arrays restore and match their fingerprints, with
  no fallback to an older step. Returns (steps, names of leftover temporary directories)."""
  d = checkpoint.checkpoint_dir(workdir)
  tmps = sorted(p.name for p in d.iterdir() if "tmp" in p.name) if d.is_dir() else []
  with checkpoint.Manager(workdir, read_only=True, max_to_keep=None) as m:
    steps = m.all_steps()
    for s in steps:
      m.restore(s, fallback=False)
  return steps, tmps


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tok, env):
  w = str(tmp_path_factory.mktemp("straight"))
  r = _run("none", w, tok, env)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  params, step = _params(w)
  assert step == TOTAL
  return {"params": params, "losses": _losses(w)}


@pytest.mark.slow
def test_kill_anywhere_then_resume_is_bitwise(tmp_path, tok, env, straight):
  """20 SIGKILLs at random moments (inside a step, while a checkpoint is written in the
  background, while the data iterator's state is read for a save), each followed by a resume
  in the same workdir: every listed checkpoint stays complete, and the run ends bitwise where
  the uninterrupted run ends, with the same loss at every step."""
  rng = random.Random(int(os.environ.get("CLOWLAB_FAULT_SEED", "0")))
  w = str(tmp_path / "killed")
  kinds = ["kill_after_step", "kill_in_save", "kill_in_data_state"]
  outcomes = []
  for i in range(20):
    kind = kinds[i % 3]
    if kind == "kill_after_step":
      fault = f"{kind}:{rng.randint(1, 4)}:{rng.uniform(0, 300):.0f}"
    elif kind == "kill_in_save":
      fault = f"{kind}:{rng.randint(1, 2)}:{rng.uniform(0, 40):.1f}"
    else:
      fault = f"{kind}:{rng.randint(1, 2)}"
    before = checkpoint.latest_step(w) if os.path.isdir(w) else None
    r = _run(fault, w, tok, env)
    assert r.returncode in (-signal.SIGKILL, 0), (fault, r.stdout[-2000:] + r.stderr[-3000:])
    steps, tmps = _check_checkpoints(w)
    after = steps[-1] if steps else None
    what = ("finished first" if r.returncode == 0 else
            "killed mid-save (temporary dir left)" if tmps else "killed")
    outcomes.append((fault, before, after, what))
    fuzzlog.record(f"kill: {kind}", "recovered" if r.returncode else "ran to the end")
    if r.returncode == 0:
      break
  r = _run("none", w, tok, env)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  print("\n".join(f"{f:28s} latest {b} -> {a}: {what}" for f, b, a, what in outcomes))
  params, step = _params(w)
  assert step == TOTAL
  _assert_bitwise(params, straight["params"])
  assert _losses(w) == straight["losses"]
  steps, tmps = _check_checkpoints(w)
  assert not tmps, tmps  # a later start removes what a killed save left
  assert sum(o[0].startswith("kill_in_save") and "mid-save" in o[3] for o in outcomes) >= 1


@pytest.mark.slow
def test_sigterm_saves_within_grace_and_resume_continues(tmp_path, tok, env, straight):
  w = str(tmp_path / "preempted")
  args = _args("none", w, tok, checkpoint_every=1000, preemption_grace_s=60)
  proc = subprocess.Popen(args, cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  metrics = os.path.join(w, "metrics.jsonl")
  deadline = time.time() + 300
  while not (os.path.exists(metrics) and open(metrics).read().count("\n") >= 5):
    assert time.time() < deadline and proc.poll() is None, proc.stdout.read()[-3000:]
    time.sleep(0.02)
  t0 = time.time()
  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=120)[0]
  took = time.time() - t0
  assert proc.returncode == 0, out[-3000:]
  step = checkpoint.latest_step(w)
  assert step is not None and 5 <= step < TOTAL, step
  assert f"SIGTERM: saved step {step}, exiting." in out
  assert took < 60
  r = _run("none", w, tok, env, checkpoint_every=1000)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert f"step {step} -> {TOTAL}" in r.stdout
  _assert_bitwise(_params(w)[0], straight["params"])
  fuzzlog.record("preemption: SIGTERM within grace", "recovered")


@pytest.mark.slow
def test_sigterm_grace_expired_exits_143_keeping_the_last_checkpoint(tmp_path, tok, env):
  w = str(tmp_path / "late")
  args = _args("none", w, tok, total_steps=100_000, checkpoint_every=2, preemption_grace_s=0.001)
  proc = subprocess.Popen(args, cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 300
  while checkpoint.latest_step(w) is None:
    assert time.time() < deadline and proc.poll() is None, proc.stdout.read()[-3000:]
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=120)[0]
  assert proc.returncode == preemption.EXIT_GRACE_EXPIRED, out[-3000:]
  assert "was not written within preemption_grace_s=0.001" in out
  steps, _ = _check_checkpoints(w)  # whatever it was writing is not listed as a step
  assert steps, out[-3000:]
  fuzzlog.record("preemption: grace period expired", "exited 143, last checkpoint intact")


@pytest.mark.slow
def test_full_disk_stops_naming_the_path_and_keeps_the_previous_checkpoint(tmp_path, tok, env,
                                                                            straight):
  w = str(tmp_path / "full")
  # From the 3rd save on no file may grow past 4 KiB: every checkpoint write fails for real
  # (EFBIG from tensorstore's writers), as on a full disk.
  r = _run("fsize_at_save:3:4096", w, tok, env, log_every=12)
  assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
  # orbax's writer threads log tracebacks to the same stderr: find our line wherever it starts
  at = r.stderr.rfind("clowlab: saving checkpoint")
  assert at >= 0, r.stderr[-3000:]
  msg = [r.stderr[at:].split("\n")[0]]
  assert str(checkpoint.checkpoint_dir(w)) in msg[0] and "File too large" in msg[0]
  steps, _ = _check_checkpoints(w)
  assert steps and f"The last complete checkpoint (step {steps[-1]}) is intact" in msg[0]
  assert steps[-1] < 9  # it stopped instead of training on without checkpoints
  # Space is back: the same command resumes and ends where the uninterrupted run ends.
  r = _run("none", w, tok, env, log_every=12)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  _assert_bitwise(_params(w)[0], straight["params"])
  assert not _check_checkpoints(w)[1]
  fuzzlog.record("disk full: on_save_error=stop", "stopped, previous intact, resumed")


@pytest.mark.slow
def test_full_disk_with_continue_trains_on_and_saves_when_space_is_back(tmp_path, tok, env,
                                                                         straight):
  w = str(tmp_path / "full_continue")
  r = _run("fsize_at_save:2:4096:5", w, tok, env, log_every=12, on_save_error="continue",
           keep_checkpoints=20)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  failed = [l for l in r.stderr.splitlines() if "training on without checkpoint step" in l]
  assert failed, r.stderr[-3000:]
  steps, _ = _check_checkpoints(w)
  assert steps[-1] == TOTAL and len(steps) < TOTAL // 3
  _assert_bitwise(_params(w)[0], straight["params"])
  fuzzlog.record("disk full: on_save_error=continue", "trained on, saved later")


def test_unwritable_workdir_is_named(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(ClowlabError, match=r"cannot write to --workdir=.*a_file/run"):
    train.train(tiny_cfg(), str(blocker / "run"))
  fuzzlog.record("unwritable workdir: parent is a file", "rejected")
  if os.geteuid() != 0:  # root ignores permission bits
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(ClowlabError, match="cannot write to --workdir"):
      train.train(tiny_cfg(), str(ro))
    fuzzlog.record("unwritable workdir: read-only", "rejected")


# ---------------------------------------------------------------------------------------------
# Numerics: NaN/Inf from the data or in a gradient, caught by the guard


def _poisoned_mlm(schedule):
  """The MLM method with a float `poison` column added to each batch: at step s in schedule,
  "loss" puts a NaN in the batch (the loss becomes NaN), "grad" keeps the loss finite but makes
  one gradient infinite (d sqrt(u)/du at u = 0)."""
  base = methods.get("mlm")

  def loss(params, mstate, batch, rng, ecfg, cfg):
    l, m, s = base.loss(params, mstate, {k: v for k, v in batch.items() if k != "poison"}, rng,
                        ecfg, cfg)
    p = batch["poison"][0]  # 0 clean, NaN bad data, 1 bad gradient
    w = params["encoder"]["embeddings"]["word"][1, 0]
    grad_bad = p == 1.0
    u = jnp.where(grad_bad, w - jax.lax.stop_gradient(w), 1.0)
    l = l + jnp.where(grad_bad, jnp.sqrt(u), 0.0) + jnp.where(jnp.isnan(p), p, 0.0)
    return l, m, s

  def make_data(cfg, ctx):
    return _Poisoning(base.make_data(cfg, ctx), schedule)

  return dataclasses.replace(base, name="poisoned_mlm", loss=loss, make_data=make_data)


class _Poisoning:
  def __init__(self, inner, schedule):
    self.inner, self.schedule, self.step = inner, schedule, 0

  def __iter__(self):
    return self

  def __next__(self):
    batch = next(self.inner)
    self.step += 1
    kind = self.schedule.get(self.step)
    value = {None: 0.0, "loss": np.nan, "grad": 1.0}[kind]
    n = next(iter(batch.values())).shape[0]
    return {**batch, "poison": np.full((n,), value, np.float32)}

  def get_state(self):
    return {"inner": self.inner.get_state(), "step": self.step}

  def set_state(self, state):
    self.inner.set_state(state["inner"])
    self.step = state["step"]


def _metrics(workdir):
  return {r["step"]: r for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))
          if "loss" in r}


def test_nan_batch_and_inf_gradient_are_skipped_and_counted(tmp_path, monkeypatch):
  monkeypatch.setitem(methods.METHODS, "poisoned_mlm", _poisoned_mlm({3: "loss", 5: "grad"}))
  cfg = tiny_cfg(method="poisoned_mlm", total_steps=6, checkpoint_every=1, keep_checkpoints=10,
                 max_bad_steps=2)
  out = train.train(cfg, str(tmp_path / "w"))
  m = _metrics(str(tmp_path / "w"))
  # metrics.jsonl writes non-finite values as strings ("nan", "inf"): still valid JSON
  assert np.isnan(float(m[3]["loss"])) and np.isfinite(float(m[5]["loss"]))
  assert not np.isfinite(float(m[5]["grad_norm"]))
  assert [m[s]["skipped_steps"] for s in range(1, 7)] == [0, 0, 1, 1, 2, 2]
  # A skipped step changes nothing: params after it are those before it, bit for bit.
  for bad in (3, 5):
    _assert_bitwise(_params(str(tmp_path / "w"), bad)[0], _params(str(tmp_path / "w"), bad - 1)[0])
  assert all(np.isfinite(np.asarray(x)).all()
             for x in jax.tree_util.tree_leaves(out["state"]["params"]))
  fuzzlog.record("numerics: NaN in a batch", "skipped and counted")
  fuzzlog.record("numerics: Inf in a gradient", "skipped and counted")


def test_k_bad_steps_in_a_row_stop_naming_step_and_last_good_checkpoint(tmp_path, monkeypatch):
  monkeypatch.setitem(methods.METHODS, "poisoned_mlm",
                      _poisoned_mlm({4: "grad", 5: "loss", 6: "grad"}))
  cfg = tiny_cfg(method="poisoned_mlm", total_steps=10, checkpoint_every=3, max_bad_steps=3)
  w = str(tmp_path / "w")
  with pytest.raises(ClowlabError, match=r"3 non-finite steps in a row up to step 6.*Last good "
                     r"checkpoint: step 3 in .*checkpoints"):
    train.train(cfg, w)
  assert checkpoint.latest_step(w) == 3
  fuzzlog.record("numerics: K bad steps in a row", "stopped naming step + checkpoint")
