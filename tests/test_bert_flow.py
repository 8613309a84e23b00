"""BERT-flow as a method: frozen encoder, cached features, data-dependent init, resume, export."""
import json
import os

import chex
import jax
import ml_collections
import numpy as np
import pytest

from clowlab import checkpoint, embed, train
from clowlab.convert import workdir as workdir_lib
from clowlab.evaluators import registry
from clowlab.methods import bert_flow
from configs import bert_flow as bert_flow_config

from tiny import override


def _cfg(**kw):
  c = bert_flow_config.get_config("runlocal")
  c.total_steps, c.batch_size, c.seq_len = 20, 32, 32
  c.checkpoint_every, c.log_every = 10, 1
  c.progress_bar, c.async_checkpoint = False, False
  c.tokenizer = "spm:600"
  c.model.hidden_size, c.model.num_layers, c.model.num_heads = 32, 1, 2
  c.model.intermediate_size, c.model.max_position_embeddings = 64, 32
  c.flow.levels, c.flow.depth, c.flow.width = 2, 2, 16
  c.flow.whitening_dims = [0, 16]
  c.mesh = {"data": 2, "fsdp": 4}
  return override(c, **kw)


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("bert_flow"))
  out = train.train(_cfg(), wd)
  return wd, out


def test_trains_only_the_flow_and_bits_per_dim_fall(run):
  wd, out = run
  rows = [m for m in _metrics(wd) if m["split"] == "train"]
  bpd = [m["bits_per_dim"] for m in rows]
  assert np.mean(bpd[-5:]) < np.mean(bpd[:5]) - 0.05, bpd
  assert "tokens_per_s" not in rows[-1] and rows[-1]["examples_per_s"] > 0  # cached: no encoder
  # No optimiser state for frozen entries; the encoder did not move between checkpoints.
  paths = [jax.tree_util.keystr(p) for p, _ in
           jax.tree_util.tree_flatten_with_path(out["state"]["opt_state"])[0]]
  assert paths and not any(f in p for p in paths for f in bert_flow.FROZEN)
  p10, _, _ = checkpoint.restore(wd, 10)
  p20, _, _ = checkpoint.restore(wd, 20)
  chex.assert_trees_all_equal(p10["encoder"], p20["encoder"])
  chex.assert_trees_all_equal(p10["flow_const"], p20["flow_const"])
  chex.assert_trees_all_equal(p10["whitening"], p20["whitening"])
  assert not np.allclose(p10["flow"]["level_0"]["step_0"]["coupling"]["out"]["kernel"],
                         p20["flow"]["level_0"]["step_0"]["coupling"]["out"]["kernel"])


def test_data_dependent_init_and_whitening_were_fitted(run):
  wd, _ = run
  params, _, _ = checkpoint.restore(wd, 10)
  an = params["flow"]["level_0"]["step_0"]["actnorm"]
  assert np.abs(np.asarray(an["bias"])).max() > 0 and np.abs(np.asarray(an["logs"])).max() > 0
  w = params["whitening"]
  assert not np.allclose(np.asarray(w["kernel"]), np.eye(32))


def test_cached_and_recomputed_features_give_the_same_loss(run):
  wd, out = run
  cfg = _cfg()
  params, ecfg, tok = out["state"]["params"], out["ecfg"], out["tokenizer"]
  texts = ["A man is playing a guitar.", "Two dogs run in the snow.", "The cat sleeps.",
           "Someone is slicing an onion on a board."]
  x = bert_flow.encode_features(params["encoder"], ecfg, tok, texts, cfg.flow.pooler,
                                cfg.seq_len)
  enc_ = tok.encode(texts, max_len=cfg.seq_len)
  ids = np.full((4, cfg.seq_len), tok.pad_id, np.int32)
  mask = np.zeros((4, cfg.seq_len), np.int32)
  for i, r in enumerate(enc_["input_ids"]):
    ids[i, :len(r)], mask[i, :len(r)] = r, 1
  tokens = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
  l_cached, _, _ = bert_flow.loss(params, {}, {"x_BD": x}, None, ecfg, cfg)
  l_recomputed, _, _ = bert_flow.loss(params, {}, tokens, None, ecfg, cfg)
  np.testing.assert_allclose(float(l_cached), float(l_recomputed), rtol=1e-4, atol=1e-5)


def test_feature_cache_is_reused_and_keyed_by_the_weights(run, tmp_path):
  _, out = run
  params, ecfg, tok = out["state"]["params"], out["ecfg"], out["tokenizer"]
  texts = ["one sentence here.", "and another one."]
  x1 = bert_flow.encode_features(params["encoder"], ecfg, tok, texts, "mean", 32, str(tmp_path))
  files = os.listdir(tmp_path / "bert_flow_features")
  x2 = bert_flow.encode_features(params["encoder"], ecfg, tok, texts, "mean", 32, str(tmp_path))
  assert os.listdir(tmp_path / "bert_flow_features") == files
  np.testing.assert_array_equal(x1, x2)
  other = jax.tree_util.tree_map(lambda v: v * 1.01, params["encoder"])
  bert_flow.encode_features(other, ecfg, tok, texts, "mean", 32, str(tmp_path))
  assert len(os.listdir(tmp_path / "bert_flow_features")) == 2


def test_resume_is_bitwise_and_does_not_rerun_the_init(run, tmp_path):
  wd, out = run
  half = str(tmp_path / "half")
  train.train(_cfg(total_steps=10), half)
  resumed = train.train(_cfg(), half)
  chex.assert_trees_all_equal(jax.device_get(resumed["state"]["params"]),
                              jax.device_get(out["state"]["params"]))


def test_evaluation_compares_raw_whitening_and_flow(run):
  wd, out = run
  cfg = _cfg()
  ctx = registry.EvalContext(method=bert_flow.METHOD, params=out["state"]["params"],
                             ecfg=out["ecfg"], cfg=cfg, tokenizer=out["tokenizer"], cache_dir="")
  r = registry.evaluate(ctx)  # the method's own entry: "flow_sts" on eval.sts
  for name in ("raw", "whitening", "whitening_16", "flow"):
    assert -100 <= r[f"{name}/spearman"] <= 100
    assert f"{name}/isotropy/mean_cos" in r
  assert r["spearman"] == r["flow/spearman"]
  # Whitened vectors are (near) isotropic on their own fitting data; raw ones are not.
  assert abs(r["whitening/isotropy/mean_cos"]) < abs(r["raw/isotropy/mean_cos"])


def test_export_then_embed_matches_the_workdir(run, tmp_path):
  wd, out = run
  out_dir = str(tmp_path / "hf")
  workdir_lib.export_workdir(wd, out_dir)
  texts = ["A man is playing a guitar.", "The cat sleeps on the sofa.", "Stocks fell today."]
  from_workdir = embed.load(wd)(texts)
  from_export = embed.load(out_dir)(texts)
  chex.assert_shape(from_export, (3, 32))
  np.testing.assert_allclose(from_export, from_workdir, rtol=1e-5, atol=1e-5)
  # It is the flow latent of the pooled vectors, not the raw pooled vectors.
  raw = embed.load(out_dir, pooling="first_last_avg")(texts)
  assert not np.allclose(raw, from_export, atol=1e-3)
  cfg = ml_collections.ConfigDict(json.loads((tmp_path / "hf" / embed.POOLER_CONFIG).read_text()))
  assert cfg.method == "bert_flow" and cfg.flow.embed == "flow"
