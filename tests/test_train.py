"""The trainer: loss falls, exact resume, sharded == single device, NaN guard, config checks
(faults injected into whole runs: tests/test_faults.py)."""
import os
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clowlab import checkpoint, methods, optim, sharding, train, train_state
from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc

from tiny import REPO, tiny_cfg
from tiny import workdir_with_tokenizer as _workdir


@pytest.fixture(scope="module")
def shared_tokenizer(tmp_path_factory):
  """Train the tiny sentencepiece tokenizer once; copy it into each workdir."""
  d = tmp_path_factory.mktemp("tok")
  train.resolve_tokenizer(tiny_cfg(), str(d))
  return d / "tokenizer"


def _params(out):
  return jax.tree_util.tree_map(np.asarray, jax.device_get(out["state"]["params"]))


@pytest.mark.slow
def test_resume_is_bitwise_and_loss_falls(tmp_path, shared_tokenizer):
  straight = train.train(tiny_cfg(), _workdir(tmp_path, "a", shared_tokenizer))
  w = _workdir(tmp_path, "b", shared_tokenizer)
  train.train(tiny_cfg(total_steps=3), w)
  assert checkpoint.latest_step(w) == 3
  resumed = train.train(tiny_cfg(), w)  # a new train() call: restores step 3, data state
  jax.tree_util.tree_map(np.testing.assert_array_equal, _params(straight), _params(resumed))
  import json  # noqa: PLC0415
  rows = [json.loads(l) for l in open(os.path.join(w, "metrics.jsonl"))]
  assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
  rows_a = [json.loads(l) for l in open(tmp_path / "a" / "metrics.jsonl")]
  # Same data order and randomness: identical per-step losses.
  assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows]
  for k in ("loss", "lr", "grad_norm", "tokens_per_s", "ms_per_step", "mfu"):
    assert k in rows[-1]


@pytest.mark.slow
def test_sharded_equals_single_device_and_restores_on_other_mesh(tmp_path, shared_tokenizer):
  eight = train.train(tiny_cfg(total_steps=2, **{"model.hidden_dropout": 0.0,
                                                  "model.attention_dropout": 0.0}),
                      _workdir(tmp_path, "eight", shared_tokenizer))
  one = train.train(tiny_cfg(total_steps=2, mesh={"data": 1, "fsdp": 1}, num_devices=1, **{
      "model.hidden_dropout": 0.0, "model.attention_dropout": 0.0}),
                    _workdir(tmp_path, "one", shared_tokenizer))
  chex.assert_trees_all_close(_params(eight), _params(one), rtol=1e-5, atol=1e-6)
  # A checkpoint written on 8 devices (data=2, fsdp=4) restores onto 4 (fsdp=4).
  w = str(tmp_path / "eight")
  devices = jax.devices()[:4]
  mesh4 = sharding.make_mesh({"data": 1, "fsdp": 4}, devices)
  shapes = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), eight["state"]["params"])
  target = jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                                  shapes, sharding.param_sharding(shapes, mesh4))
  params, _, _ = checkpoint.restore(w, params_target=target)
  leaf = params["encoder"]["layers"]["mlp"]["wi"]["kernel"]
  assert len(leaf.sharding.device_set) == 4
  chex.assert_trees_all_equal(jax.tree_util.tree_map(np.asarray, params), _params(eight))


def test_wall_clock_budget_stops_with_a_resumable_checkpoint(tmp_path, shared_tokenizer, capsys):
  w = _workdir(tmp_path, "budget", shared_tokenizer)
  train.train(tiny_cfg(total_steps=50, checkpoint_every=100, max_train_seconds=1e-6), w)
  assert checkpoint.latest_step(w) == 1
  assert "max_train_seconds=1e-06 reached: saved step 1" in capsys.readouterr().out
  out = train.train(tiny_cfg(total_steps=3, checkpoint_every=100), w)  # budget lifted: resumes
  assert int(out["state"]["step"]) == 3


def test_config_change_is_refused(tmp_path, shared_tokenizer):
  w = _workdir(tmp_path, "c", shared_tokenizer)
  train.train(tiny_cfg(total_steps=1, checkpoint_every=1), w)
  with pytest.raises(ClowlabError, match=r"different config \(seq_len: checkpoint 32 vs now 16\)"):
    train.train(tiny_cfg(total_steps=2, seq_len=16), w)
  assert checkpoint.latest_step(w) == 1  # nothing destroyed


def test_corrupt_latest_falls_back(tmp_path, shared_tokenizer):
  w = _workdir(tmp_path, "d", shared_tokenizer)
  train.train(tiny_cfg(total_steps=2, checkpoint_every=1), w)
  for root, _, files in os.walk(os.path.join(w, "checkpoints", "2", "params")):
    for f in files:
      if f != "commit_success.txt":
        open(os.path.join(root, f), "wb").close()  # truncate every array file of step 2
  with checkpoint.Manager(w, read_only=True, max_to_keep=None) as m:
    r = m.restore()
  assert r["step"] == 1


def test_batch_not_divisible_and_bad_mesh(tmp_path, shared_tokenizer):
  with pytest.raises(ClowlabError, match="batch_size=12 is not divisible by the 8"):
    train.train(tiny_cfg(batch_size=12), _workdir(tmp_path, "e", shared_tokenizer))
  with pytest.raises(ClowlabError, match="needs 16 devices but 8 are available"):
    sharding.make_mesh({"data": 4, "fsdp": 4})
  with pytest.raises(ClowlabError, match="unknown method 'mlmm'; valid: bert_flow, clower, coco_lm, electra, "
                     "infoxlm, layer_attention, mlm, simcse"):
    methods.get("mlmm")


def test_nan_guard_skips_update():
  """A non-finite loss leaves params and optimiser state untouched and counts the skip."""
  ecfg = enc.EncoderConfig(vocab_size=10, hidden_size=8, num_layers=1, num_heads=1,
                           intermediate_size=8, max_position_embeddings=4)

  def loss(params, state, batch, rng, ecfg, cfg):
    w = params["encoder"]["pooler"]["kernel"]
    return jnp.sum(w) * batch["scale"][0], {}, state

  method = methods.Method(name="t", init_heads=lambda *a: {}, loss=loss, make_data=None)
  cfg = tiny_cfg(**{"optim.warmup_steps": 0})
  params = {"encoder": enc.init_params(jax.random.key(0), ecfg)}
  tx, lr = optim.make_optimizer(cfg.optim, 10, params)
  state = {"step": jnp.int32(0), "params": params, "opt_state": tx.init(params),
           "method_state": {}, "rng": jax.random.key_data(jax.random.key(0)),
           "skipped": jnp.int32(0)}
  step = jax.jit(train_state.make_train_step(method, ecfg, cfg, tx, lr))
  s1, m1 = step(state, {"scale": jnp.array([jnp.nan])})
  assert not bool(m1["finite"]) and int(s1["skipped"]) == 1 and int(s1["step"]) == 1
  chex.assert_trees_all_equal(s1["params"], state["params"])
  s2, m2 = step(s1, {"scale": jnp.array([1.0])})
  assert bool(m2["finite"]) and int(s2["skipped"]) == 1
  assert not np.allclose(s2["params"]["encoder"]["pooler"]["kernel"], params["encoder"]["pooler"]
                         ["kernel"])


def test_grad_accumulation_matches_full_batch():
  """Mean-loss method: accumulating 4 micro-batches == one step on the whole batch."""
  ecfg = enc.EncoderConfig(vocab_size=10, hidden_size=8, num_layers=1, num_heads=1,
                           intermediate_size=8, max_position_embeddings=4)

  def loss(params, state, batch, rng, ecfg, cfg):
    w = params["encoder"]["pooler"]["kernel"]
    return jnp.mean((batch["x"] @ w - batch["y"]) ** 2), {}, state

  method = methods.Method(name="t", init_heads=lambda *a: {}, loss=loss, make_data=None)
  params = {"encoder": enc.init_params(jax.random.key(0), ecfg)}
  batch = {"x": jax.random.normal(jax.random.key(1), (16, 8)),
           "y": jax.random.normal(jax.random.key(2), (16, 8))}
  out = []
  for accum in (1, 4):
    cfg = tiny_cfg(grad_accum_steps=accum)
    tx, lr = optim.make_optimizer(cfg.optim, 10, params)
    state = {"step": jnp.int32(3), "params": params, "opt_state": tx.init(params),
             "method_state": {}, "rng": jax.random.key_data(jax.random.key(0)),
             "skipped": jnp.int32(0)}
    out.append(jax.jit(train_state.make_train_step(method, ecfg, cfg, tx, lr))(state, batch))
  chex.assert_trees_all_close(out[0][0]["params"], out[1][0]["params"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out[0][1]["grad_norm"], out[1][1]["grad_norm"], rtol=1e-5)


def test_weight_decay_mask_and_groups():
  ecfg = enc.EncoderConfig(vocab_size=10, hidden_size=8, num_layers=1, num_heads=1,
                           intermediate_size=8, max_position_embeddings=4)
  params = {"encoder": enc.init_params(jax.random.key(0), ecfg),
            "head": {"kernel": jnp.ones((8, 8)), "bias": jnp.ones(8)}}
  cfg = tiny_cfg()
  cfg.optim.groups = {"head": {"pattern": "^head/", "lr_multiplier": 10.0}}
  cfg.optim.warmup_steps, cfg.optim.clip_norm, cfg.optim.weight_decay = 0, 0.0, 0.5
  tx, _ = optim.make_optimizer(cfg.optim, 10, params)
  zero = jax.tree_util.tree_map(jnp.zeros_like, params)
  upd, _ = tx.update(zero, tx.init(params), params)
  # Zero gradient: only decoupled weight decay moves params: kernels yes, biases/LN no;
  # the head's learning rate is 10x.
  assert float(jnp.abs(upd["encoder"]["layers"]["attn"]["q"]["bias"]).max()) == 0.0
  assert float(jnp.abs(upd["encoder"]["embeddings"]["ln"]["scale"]).max()) == 0.0
  base = float(upd["encoder"]["pooler"]["kernel"].reshape(-1)[0] /
               params["encoder"]["pooler"]["kernel"].reshape(-1)[0])
  head = float(upd["head"]["kernel"][0, 0] / params["head"]["kernel"][0, 0])
  np.testing.assert_allclose(head, 10 * base, rtol=1e-5)
  assert float(jnp.abs(upd["head"]["bias"]).max()) == 0.0
