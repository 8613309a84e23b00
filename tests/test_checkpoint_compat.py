"""Checkpoint compatibility (issue 10): a workdir written by clowlab at checkpoint format 1
(tests/fixtures/checkpoint_v1, made by tests/fixtures/make_checkpoint_v1.py) must restore with
the same values and resume training. A change to the checkpoint layout, the param tree, the
train state or the data iterator's state that cannot read it fails here: bump
checkpoint.FORMAT_VERSION and add a migration instead of regenerating the fixture."""
import json
import shutil

import jax
import ml_collections
import numpy as np

from clowlab import checkpoint, train
from tiny import REPO

FIXTURE = REPO / "tests" / "fixtures" / "checkpoint_v1"


def _copy(tmp_path):
  w = tmp_path / "v1"
  shutil.copytree(FIXTURE, w)
  return w


def test_format_1_restores_the_same_values(tmp_path):
  w = _copy(tmp_path)
  params, meta, step = checkpoint.restore(str(w))  # also checks the saved fingerprints
  assert step == 2 and meta["format_version"] == 1 == checkpoint.FORMAT_VERSION
  expected = json.loads((FIXTURE / "expected.json").read_text())
  flat = {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]}
  assert sorted(flat) == sorted(expected)
  for k, want in expected.items():
    v = flat[k]
    assert list(v.shape) == want["shape"] and str(v.dtype) == want["dtype"], k
    assert float(v.astype(np.float64).sum()) == want["sum"], k
    assert float(v.reshape(-1)[0]) == want["first"], k


def test_format_1_resumes_training(tmp_path, monkeypatch):
  w = _copy(tmp_path)
  meta = checkpoint.Manager(str(w), read_only=True, max_to_keep=None).read_meta()
  cfg = ml_collections.ConfigDict(meta["config"])
  cfg.total_steps = 4
  monkeypatch.chdir(REPO)  # the fixture's data path is relative to the repository root
  out = train.train(cfg, str(w))
  assert int(out["state"]["step"]) == 4
  assert checkpoint.latest_step(str(w)) == 4
  assert all(np.isfinite(np.asarray(x)).all()
             for x in jax.tree_util.tree_leaves(out["state"]["params"]))
