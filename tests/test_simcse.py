"""SimCSE and layer-wise attention pooling: the loss is InfoNCE over the method's vectors at the
configured temperature, the sharded step equals the single-device one, supervised triples work,
and a trained workdir exports to an HF directory that embeds exactly as the workdir does."""
import json
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from clowlab import embed, methods, sharding, train, train_state
from clowlab.convert import workdir as wd
from clowlab.data import pipeline, sources
from clowlab.errors import ClowlabError
from clowlab.losses import contrastive
from clowlab.methods import simcse
from clowlab.models import encoder as enc

from tiny import DEMO_DATA, REPO

sys.path.insert(0, str(REPO))
from configs import simcse as simcse_config  # noqa: E402

ECFG = enc.EncoderConfig(vocab_size=40, hidden_size=16, num_layers=2, num_heads=2,
                         intermediate_size=32, max_position_embeddings=16)


def _cfg(method="simcse", **contrastive_kw):
  c = simcse_config.get_config("runlocal" + (",layer_attention" if method != "simcse" else ""))
  c.contrastive.update(contrastive_kw)
  return c


def _batch(B=8, L=10, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, L + 1, B)
  mask = (np.arange(L)[None] < lengths[:, None]).astype(np.int32)
  ids = np.where(mask > 0, rng.integers(5, ECFG.vocab_size, (B, L)), 0).astype(np.int32)
  return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _params(method, cfg, seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {"encoder": enc.init_params(k1, ECFG), **method.init_heads(k2, ECFG, cfg)}


@pytest.mark.parametrize("name", ["simcse", "layer_attention"])
def test_loss_is_info_nce_of_the_method_vectors(name):
  method = methods.get(name)
  cfg = _cfg(name, impl="global")
  params = _params(method, cfg)
  batch = _batch()
  rng = jax.random.key(5)
  loss, metrics, _ = method.loss(params, {}, batch, rng, ECFG, cfg)
  # Recompute: one pass over [batch; batch] (different dropout rows), the method's vectors.
  two = {k: jnp.concatenate([v, v]) for k, v in batch.items()}
  r_enc, r_pool = jax.random.split(rng)
  out = enc.encode(params["encoder"], two["input_ids"], two["attention_mask"],
                   two["token_type_ids"], r_enc, True, cfg=ECFG)
  z = simcse.represent(params, out, two["attention_mask"], r_pool, True, cfg.contrastive)
  chex.assert_shape(z, (16, ECFG.hidden_size))  # after the MLP: D, also for layer attention
  q, k = np.split(np.asarray(z, np.float64), 2)
  q /= np.linalg.norm(q, axis=1, keepdims=True)
  k /= np.linalg.norm(k, axis=1, keepdims=True)
  logits = q @ k.T / 0.05
  want = np.mean(np.log(np.exp(logits).sum(1)) - np.diag(logits))
  np.testing.assert_allclose(loss, want, rtol=2e-5)
  # Temperature scaling: the same vectors at temperature 0.5.
  loss_t, _, _ = method.loss(params, {}, batch, rng, ECFG, _cfg(name, impl="global",
                                                                 temperature=0.5))
  logits = q @ k.T / 0.5
  np.testing.assert_allclose(loss_t, np.mean(np.log(np.exp(logits).sum(1)) - np.diag(logits)),
                             rtol=2e-5)
  # The two dropout views differ (otherwise unsup SimCSE would have nothing to learn).
  assert 0.5 < float(metrics["cl_pos_sim"]) < 1.0


def test_eval_vectors_follow_the_mlp_mode():
  method = methods.get("simcse")
  batch = _batch()
  cfg = _cfg(mlp="train_only", pooler="cls_before_pooler")
  params = _params(method, cfg)
  out = enc.encode(params["encoder"], batch["input_ids"], batch["attention_mask"], cfg=ECFG)
  chex.assert_trees_all_close(method.embed(params, batch, ECFG, cfg), out.cls_BD)
  cfg = _cfg(mlp="always", pooler="cls_before_pooler")
  want = jnp.tanh(out.cls_BD @ params["mlp"]["layers"][0]["kernel"]
                  + params["mlp"]["layers"][0]["bias"])
  chex.assert_trees_all_close(method.embed(params, batch, ECFG, cfg), want, rtol=1e-5)
  with pytest.raises(ClowlabError, match="contrastive.mlp='sometimes'; valid"):
    method.embed(params, batch, ECFG, _cfg(mlp="sometimes"))


@pytest.mark.parametrize("name", ["simcse", "layer_attention"])
def test_sharded_train_step_equals_single_device(name):
  """8 devices (data 2 x fsdp 4, params sharded, the loss's shard_map all-gather) vs 1 device."""
  method = methods.get(name)
  cfg = _cfg(name)
  cfg.optim.warmup_steps = 1
  params = _params(method, cfg)
  batch = _batch(B=16)
  from clowlab import optim  # noqa: PLC0415
  tx, lr_fn = optim.make_optimizer(cfg.optim, 10, params)

  def run(mesh):
    p_shard = sharding.param_sharding(params, mesh)
    state = {"step": jnp.int32(0), "params": jax.device_put(params, p_shard),
             "opt_state": tx.init(params), "method_state": {},
             "rng": jax.random.key_data(jax.random.key(0)), "skipped": jnp.int32(0)}
    b = sharding.global_batch(batch, mesh)
    with jax.set_mesh(mesh):
      step = jax.jit(train_state.make_train_step(method, ECFG, cfg, tx, lr_fn))
      new, m = step(state, b)
    return jax.device_get((new["params"], m["loss"], m["grad_norm"]))

  one = run(jax.make_mesh((1, 1), ("data", "fsdp"), devices=jax.devices()[:1],
                          axis_types=(jax.sharding.AxisType.Auto,) * 2))
  eight = run(jax.make_mesh((2, 4), ("data", "fsdp"),
                            axis_types=(jax.sharding.AxisType.Auto,) * 2))
  chex.assert_trees_all_close(eight, one, rtol=1e-5, atol=1e-6)


def test_supervised_triples(tmp_path):
  f = tmp_path / "triples.csv"
  f.write_text("sent0,sent1,hard_neg\n" + "".join(
      f"a man plays guitar {i},someone plays music {i},a cat sleeps {i}\n" for i in range(12)))
  ds = sources.load_triples(str(f), cache_dir=str(tmp_path / "c"))
  assert ds.column_names == ["text_a", "text_b", "text_c"]
  assert pipeline.infer_kind(ds.column_names) == "triples"
  with pytest.raises(ClowlabError, match="cannot guess the columns"):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y,z\n1,2,3\n")
    sources.load_triples(str(bad), cache_dir=str(tmp_path / "c"))
  method = methods.get("simcse")
  cfg = _cfg(objective="sup", mlp="always", impl="global", hard_negative_weight=1.0)
  params = _params(method, cfg)
  b = {"a": _batch(seed=1), "b": _batch(seed=2), "c": _batch(seed=3)}
  loss, m, _ = method.loss(params, {}, b, jax.random.key(0), ECFG, cfg)
  z = [simcse.represent(params, enc.encode(params["encoder"], b[v]["input_ids"],
                                           b[v]["attention_mask"], b[v]["token_type_ids"],
                                           cfg=ECFG.replace(hidden_dropout=0.0,
                                                            attention_dropout=0.0)),
                        b[v]["attention_mask"], None, False, cfg.contrastive) for v in "abc"]
  assert np.isfinite(float(loss)) and float(m["cl_num_valid"]) == 8
  # Without dropout the loss is exactly InfoNCE over [positives; hard negatives] + weight.
  cfg0 = _cfg(objective="sup", mlp="always", impl="global", hard_negative_weight=1.0)
  ecfg0 = ECFG.replace(hidden_dropout=0.0, attention_dropout=0.0)
  loss0, _, _ = method.loss(params, {}, b, jax.random.key(0), ecfg0, cfg0)
  want, _ = contrastive.info_nce(z[0], z[1], hard_negatives_BD=z[2], temperature=0.05,
                                 hard_negative_weight=1.0)
  np.testing.assert_allclose(loss0, want, rtol=1e-5)


@pytest.mark.slow
def test_train_export_embed_roundtrip(tmp_path):
  """runlocal layer-attention run (a few steps) -> workdir; export -> HF dir with the pooler;
  clowlab.embed on both gives the same vectors; the CLI prints one JSON line."""
  cfg = simcse_config.get_config("runlocal,layer_attention")
  cfg.total_steps, cfg.batch_size, cfg.checkpoint_every, cfg.eval_every = 4, 16, 4, 0
  cfg.progress_bar, cfg.async_checkpoint, cfg.tokenizer = False, False, "spm:600"
  cfg.model.hidden_size, cfg.model.intermediate_size = 32, 64
  cfg.mesh = ml_collections.ConfigDict({"data": 2, "fsdp": 4})
  work = tmp_path / "run"
  res = train.train(cfg, str(work))
  assert np.isfinite(res["metrics"]["loss"])
  out = wd.export_workdir(work, tmp_path / "hf")
  names = {p.name for p in (tmp_path / "hf").iterdir()}
  assert {embed.POOLER_CONFIG, embed.POOLER_WEIGHTS, "modules.json", "config.json"} <= names
  texts = ["A man is playing a guitar.", "Two dogs run.", "", "A woman slices an onion."]
  a, b = embed.load(work)(texts), embed.load(out)(texts)
  chex.assert_shape(a, (4, 32))
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  mean = embed.load(out, pooling="mean")(texts)
  assert not np.allclose(mean, a)
  proc = subprocess.run(
      [sys.executable, "-m", "clowlab.evaluate", "--task=sts", f"--model={out}",
       f"--data={DEMO_DATA / 'sts_en_dev.csv'}", "--columns=sentence1,sentence2,score",
       f"--cache_dir={tmp_path / 'c'}"], capture_output=True, text=True, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-2000:]
  r = json.loads(proc.stdout.strip().splitlines()[-1])
  assert {"spearman", "spearman_wmean", "sts_en_dev/spearman"} <= set(r)
  assert -100 <= r["spearman"] <= 100
