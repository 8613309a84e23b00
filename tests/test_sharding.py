"""Sharding rules: the indivisible-dimension fallback, batch sharding, mesh errors (golden
shardings of every method's train state: test_golden.py)."""
import jax
import numpy as np
import pytest

from clowlab import sharding
from clowlab.errors import ClowlabError


def test_indivisible_dims_move_or_stay_replicated():
  mesh = sharding.make_mesh({"data": 1, "fsdp": 8})
  P = jax.sharding.PartitionSpec
  assert sharding.spec_for("encoder/embeddings/word", (250002, 768), mesh) == P(None, "fsdp")
  assert sharding.spec_for("encoder/embeddings/word", (30522, 13), mesh) == P()
  assert sharding.spec_for("encoder/layers/attn/q/bias", (12, 768), mesh) == P()


def test_global_batch_is_sharded_over_all_devices():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  b = sharding.global_batch({"input_ids": np.arange(32).reshape(16, 2)}, mesh)
  x = b["input_ids"]
  assert x.shape == (16, 2) and len(x.sharding.device_set) == 8
  assert {s.data.shape for s in x.addressable_shards} == {(2, 2)}
  np.testing.assert_array_equal(np.asarray(x), np.arange(32).reshape(16, 2))


def test_mesh_errors():
  with pytest.raises(ClowlabError, match="unknown axes"):
    sharding.make_mesh({"data": 1, "model": 8})
  with pytest.raises(ClowlabError, match="at most one axis to -1"):
    sharding.make_mesh({"data": -1, "fsdp": -1})
  with pytest.raises(ClowlabError, match="does not divide the 8 devices"):
    sharding.make_mesh({"data": 3, "fsdp": -1})
  assert dict(sharding.make_mesh({"data": 2, "fsdp": -1}).shape) == {"data": 2, "fsdp": 4}
