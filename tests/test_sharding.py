"""Sharding rules: golden parameter shardings per config, batch sharding, mesh errors."""
import json
import os
import pathlib
import sys

import jax
import numpy as np
import pytest

from clowlab import methods, sharding
from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc

from conftest import REPO

sys.path.insert(0, str(REPO))
from configs import mlm as mlm_config  # noqa: E402

GOLDEN = pathlib.Path(__file__).parent / "golden"


def _param_shapes(cfg, vocab_size=32000):
  ecfg = enc.EncoderConfig.from_dict({**dict(cfg.model), "vocab_size": vocab_size})
  method = methods.get(cfg.method)
  return jax.eval_shape(lambda: {"encoder": enc.init_params(jax.random.key(0), ecfg),
                                 **method.init_heads(jax.random.key(1), ecfg, cfg)})


@pytest.mark.parametrize("config_name", ["mlm"])
def test_golden_param_shardings(config_name):
  """The pod-size default's param shardings on an 8-way fsdp mesh. If a change is deliberate,
  regenerate with CLOWLAB_UPDATE_GOLDEN=1 and review the diff."""
  cfg = {"mlm": mlm_config}[config_name].get_config()
  mesh = sharding.make_mesh({"data": 1, "fsdp": 8})
  table = sharding.sharding_table(_param_shapes(cfg), mesh)
  path = GOLDEN / f"shardings_{config_name}.json"
  if os.environ.get("CLOWLAB_UPDATE_GOLDEN"):
    path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
  assert table == json.loads(path.read_text())
  # The big matrices are sharded, the small vectors replicated.
  assert table["encoder/layers/mlp/wi/kernel"] == "P(None, 'fsdp', None)"
  assert table["encoder/embeddings/word"] == "P('fsdp', None)"
  assert table["encoder/layers/attn_ln/scale"] == "P()"


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
