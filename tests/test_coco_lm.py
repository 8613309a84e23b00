"""COCO-LM / ELECTRA: corruption, copy-head targets, CLM probability, crops, sharded == single
device, and a short run of each that learns and exports."""
import json
import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clowlab import sharding, train
from clowlab.convert import hf
from clowlab.convert import workdir as workdir_lib
from clowlab.methods import coco_lm
from clowlab.models import encoder as enc
from configs import coco_lm as coco_config
from configs import electra as electra_config

from tiny import DEMO_DATA, override


def _cfg(config=coco_config, **kw):
  c = config.get_config("runlocal")
  c.total_steps, c.batch_size, c.seq_len = 30, 16, 32
  c.checkpoint_every, c.log_every, c.eval_every = 30, 1, 0
  c.mode, c.progress_bar, c.async_checkpoint = "train", False, False
  c.tokenizer = "spm:600"
  c.model.hidden_size, c.model.num_layers, c.model.num_heads = 32, 2, 2
  c.model.intermediate_size, c.model.max_position_embeddings = 64, 32
  c.data.train = [str(DEMO_DATA / "en_wikitext2.txt")]
  c.data.eval = []
  c.optim.warmup_steps = 3
  c.mesh = {"data": 2, "fsdp": 4}
  return override(c, **kw)


def test_corruption_only_touches_selected_positions_and_reports_replacements():
  original = jnp.array([[2, 10, 11, 12, 13, 3, 0, 0], [2, 20, 21, 22, 3, 0, 0, 0]])
  w = jnp.array([[0, 1, 0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0]], jnp.float32)
  pos, w_p = coco_lm.selected_positions(w, 3)
  chex.assert_shape(pos, (2, 3))
  # Row 0 samples 99 at position 1 and the original 12 at position 3 (not a replacement); the
  # filler slot (weight 0) must not write its sample.
  sampled = jnp.where(pos == 1, 99, jnp.where(pos == 3, 12, 77))
  sampled = sampled.at[1].set(jnp.where(pos[1] == 2, 55, 66))
  corrupted, replaced = coco_lm.corrupt(original, pos, w_p, sampled)
  want = original.at[0, 1].set(99).at[1, 2].set(55)
  chex.assert_trees_all_equal(corrupted, want)
  chex.assert_trees_all_equal(replaced, want != original)
  assert int(replaced.sum()) == 2
  # Copy-head targets are "kept the original" at every position.
  assert bool(jnp.all((~replaced) == (corrupted == original)))


def test_clm_probability_mixes_copy_and_lm():
  logits = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]]))
  targets = jnp.array([[0, 2]])
  copy_logit = jnp.array([[0.5, -1.0]])
  same = jnp.array([[True, False]])
  got = coco_lm.clm_log_prob(logits, targets, copy_logit, same, stop_copy_grad=False)
  pc = 1 / (1 + np.exp(-np.array([0.5, -1.0])))
  want = np.log([pc[0] + (1 - pc[0]) * 0.7, (1 - pc[1]) * 0.3])
  chex.assert_trees_all_close(got[0], jnp.asarray(want, jnp.float32), rtol=1e-5)
  # With the copy gradient stopped, the CLM term does not train the copy logit.
  g = jax.grad(lambda c: coco_lm.clm_log_prob(logits, targets, c, same, True).sum())(copy_logit)
  chex.assert_trees_all_equal(g, jnp.zeros_like(g))


def test_crop_is_a_contiguous_span_of_the_original_between_cls_and_sep():
  L = 16
  lengths = [16, 12, 3, 2]
  ids = np.zeros((4, L), np.int32)
  mask = np.zeros((4, L), np.int32)
  for b, n in enumerate(lengths):
    ids[b, :n] = [101] + list(range(1000 * b + 1, 1000 * b + n - 1)) + [102]
    mask[b, :n] = 1
  for seed in range(5):
    out, out_mask = coco_lm.crop(jnp.asarray(ids), jnp.asarray(mask), 0.9, jax.random.key(seed))
    out, out_mask = np.asarray(out), np.asarray(out_mask)
    for b, n in enumerate(lengths):
      content = n - 2
      keep = min(max(math.ceil(0.9 * content), min(content, 1)), content)
      row = out[b, :out_mask[b].sum()]
      assert out_mask[b].sum() == keep + 2 and row[0] == 101 and row[-1] == 102
      inner = row[1:-1]
      assert np.all(np.diff(inner) == 1)  # contiguous, in order
      assert set(inner) <= set(ids[b, 1:n - 1])
      assert np.all(out[b, out_mask[b].sum():] == 0)  # padded with the row's pad id


def _batch(cfg, tok, rng):
  from clowlab.data import masking  # noqa: PLC0415
  texts = [f"the cat number {i} sat on the mat and looked at bird {i + 3}" for i in range(16)]
  e = tok.encode(texts, max_len=cfg.seq_len)
  ids = np.full((16, cfg.seq_len), tok.pad_id, np.int32)
  mask = np.zeros_like(ids)
  for i, r in enumerate(e["input_ids"]):
    ids[i, :len(r)], mask[i, :len(r)] = r, 1
  m = masking.MlmMasker.from_tokenizer(tok).mask(ids, rng=rng)
  return {**m, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def test_sharded_loss_and_grads_equal_single_device(tmp_path):
  cfg = _cfg()
  tok = train.resolve_tokenizer(cfg, str(tmp_path))
  ecfg = enc.EncoderConfig.from_dict({**dict(cfg.model), "vocab_size": tok.vocab_size,
                                      "pad_token_id": tok.pad_id})
  params = {"encoder": enc.init_params(jax.random.key(0), ecfg),
            **coco_lm.init_heads(jax.random.key(1), ecfg, cfg)}
  batch = _batch(cfg, tok, np.random.default_rng(0))
  rng = jax.random.key(3)
  fn = lambda p, b: coco_lm.loss(p, {}, b, rng, ecfg, cfg)[:2]  # noqa: E731
  grad_fn = jax.jit(jax.value_and_grad(fn, has_aux=True))
  # The reference runs on one device (no mesh), compiled: op-by-op took most of a minute.
  (loss1, m1), g1 = grad_fn(params, batch)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  p_sh = jax.device_put(params, sharding.param_sharding(params, mesh))
  b_sh = sharding.global_batch(batch, mesh)
  with jax.set_mesh(mesh):  # the SCL loss all-gathers keys inside jax.shard_map
    (loss8, m8), g8 = grad_fn(p_sh, b_sh)
  chex.assert_trees_all_close(loss8, loss1, rtol=1e-5)
  chex.assert_trees_all_close(jax.device_get(g8), g1, rtol=1e-4, atol=1e-6)
  for k in ("scl_loss", "clm_loss", "binary_loss", "gen_mlm_loss", "replaced_rate"):
    chex.assert_trees_all_close(m8[k], m1[k], rtol=1e-5)


@pytest.mark.parametrize("config", [coco_config, electra_config], ids=["coco_lm", "electra"])
def test_short_run_learns_and_exports_the_main_model(tmp_path, config):
  wd = str(tmp_path / "run")
  out = train.train(_cfg(config), wd)
  rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
  first, last = rows[:5], rows[-5:]
  for k in ("gen_mlm_loss", "loss"):
    assert np.mean([r[k] for r in last]) < np.mean([r[k] for r in first]), k
  names = set(rows[-1])
  assert {"binary_loss", "replaced_rate"} <= names
  assert ({"clm_loss", "scl_loss"} <= names) == (config is coco_config)
  hf_dir = str(tmp_path / "hf")
  workdir_lib.export_workdir(wd, hf_dir)
  m = hf.load_hf(hf_dir)
  assert m.cfg.num_layers == 2
  chex.assert_trees_all_close(m.params["layers"],
                              jax.device_get(out["state"]["params"]["encoder"]["layers"]))


def test_continues_from_an_imported_hf_checkpoint(tmp_path, minilm_dir):
  cfg = _cfg(total_steps=2, checkpoint_every=2, init_from=str(minilm_dir), tokenizer="",
             model={"scan_layers": False}, mesh={"data": 1, "fsdp": -1})
  cfg.optim.lr = 1e-6
  out = train.train(cfg, str(tmp_path / "cont"))
  m = hf.load_hf(str(minilm_dir))
  p = jax.device_get(out["state"]["params"])
  assert out["ecfg"].num_layers == 6 and coco_lm.generator_config(out["ecfg"], cfg).num_layers == 2
  chex.assert_trees_all_close(p["encoder"]["layers"], m.params["layers"], atol=1e-4)
  chex.assert_shape(p["generator"]["layers"]["mlp"]["wi"]["kernel"], (2, 384, 1536))
