"""Ahead-of-time compile check (clowlab.aot): batch specs match the data, steps compile."""
import importlib
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from clowlab import aot, methods, sharding, train, train_state
from clowlab.errors import ClowlabError
from tiny import REPO, override, tiny_cfg, workdir_with_tokenizer

TINY_MODEL = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
              "max_position_embeddings": 64}


def _libtpu():
  try:
    from jax.experimental import topologies
    topologies.get_topology_desc(platform="tpu", topology_name="v5e:2x2")
    return True
  except Exception:  # noqa: BLE001 - no libtpu: the TPU cases skip
    return False


def _cfg(name, variant="runlocal", **kw):
  c = importlib.import_module(f"configs.{name}").get_config(variant)
  c.batch_size, c.progress_bar = 8, False
  c.model = dict(c.model, **TINY_MODEL)
  return override(c, **kw)


def _real_batch(cfg, workdir):
  """The first global batch make_data yields, built as train._train builds it (one process)."""
  method = methods.get(cfg.method)
  cache = os.path.join(workdir, "cache")
  text = None if method.tokenizer_text is None else (
      lambda: method.tokenizer_text(cfg, cache))
  tok = train.resolve_tokenizer(cfg, workdir, text)
  ecfg, imported, _ = train.resolve_model(cfg, tok)
  params = None
  if method.data_uses_params:
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1}, jax.devices()[:1])
    tx, _ = train_state.optimizer_for(method, ecfg, cfg)
    params = train_state.init_state(method, ecfg, cfg, tx, mesh, imported)[0]["params"]
  ctx = methods.DataContext(tokenizer=tok, process_index=0, process_count=1, cache_dir=cache,
                            params=params, encoder_config=ecfg)
  return next(method.make_data(cfg, ctx)), ecfg


@pytest.fixture(scope="module")
def en_tok(tmp_path_factory):
  d = tmp_path_factory.mktemp("en_tok")
  train.resolve_tokenizer(tiny_cfg(), str(d))
  return d / "tokenizer"


def _triples(tmp_path):
  p = tmp_path / "nli.csv"
  rows = ["sent0,sent1,hard_neg"] + [f"a man plays {i},someone plays {i},nobody sleeps {i}"
                                     for i in range(20)]
  p.write_text("\n".join(rows) + "\n")
  return str(p)


CASES = {
    "mlm": lambda t: _cfg("mlm"),
    "simcse": lambda t: _cfg("simcse"),
    "simcse_sup_triples": lambda t: _cfg("simcse", **{
        "contrastive.objective": "sup", "data.train": [_triples(t)],
        "data.split_sentences": False}),
    "simcse_sup_pairs": lambda t: _cfg("simcse", **{
        "contrastive.objective": "sup", "data.train": [_triples(t)],
        "data.split_sentences": False, "data.columns": ["sent0", "sent1"]}),
    "layer_attention": lambda t: _cfg("layer_attention"),
    "coco_lm": lambda t: _cfg("coco_lm"),
    "electra": lambda t: _cfg("electra"),
    "bert_flow": lambda t: _cfg("bert_flow", batch_size=8),
    "bert_flow_recompute": lambda t: _cfg("bert_flow", **{"flow.features": "recompute"}),
}


def _check_spec(cfg, workdir):
  batch, ecfg = _real_batch(cfg, str(workdir))
  spec = methods.get(cfg.method).batch_spec(cfg, ecfg)
  real = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype),
                                batch)
  assert jax.tree_util.tree_structure(real) == jax.tree_util.tree_structure(spec)
  chex.assert_trees_all_equal_shapes_and_dtypes(real, spec)


@pytest.fixture(scope="module")
def shared_workdirs(tmp_path_factory, en_tok):
  """One workdir per tokenizer family: later cases reuse its tokenizer and data caches (BERT-flow
  its encoded features)."""
  en = workdir_with_tokenizer(tmp_path_factory.mktemp("en"), "w", en_tok)
  return {"en": en, "infoxlm": str(tmp_path_factory.mktemp("xl")),
          "clower": str(tmp_path_factory.mktemp("zh"))}


def test_every_registered_method_has_a_batch_spec_case():
  """The batch-spec cases (here and the multilingual / Chinese ones below) cover the registry."""
  covered = {c for c in [*CASES, *MULTILINGUAL_CASES] if c in methods.METHODS}
  assert covered == set(methods.METHODS)


@pytest.mark.parametrize("case", list(CASES))
def test_batch_spec_matches_the_data(case, tmp_path, shared_workdirs):
  cfg = CASES[case](tmp_path)
  cfg.tokenizer = ""  # the workdir's copy
  _check_spec(cfg, shared_workdirs["en"])


MULTILINGUAL_CASES = ["infoxlm", "infoxlm_no_xlco", "clower", "clower_mlm_only"]


@pytest.mark.parametrize("case", MULTILINGUAL_CASES)
def test_batch_spec_matches_the_data_multilingual_and_chinese(case, shared_workdirs):
  cfg = {"infoxlm": lambda: _cfg("infoxlm", **{"infoxlm.parallel_batch_size": 4}),
         "infoxlm_no_xlco": lambda: _cfg("infoxlm", **{"infoxlm.xlco_weight": 0.0}),
         "clower": lambda: _cfg("clower"),
         "clower_mlm_only": lambda: _cfg("clower", **{"clower.word_weight": 0.0}),
         }[case]()
  _check_spec(cfg, shared_workdirs[cfg.method])


def test_compiles_on_8_cpu_devices_with_a_memory_estimate():
  cfg = tiny_cfg()
  r = aot.check(cfg, "cpu:8", name="tiny")
  assert r.devices == 8 and r.mesh == {"data": 2, "fsdp": 4}
  method, ecfg = methods.get("mlm"), aot.encoder_config(cfg)[0]
  fresh_params, _ = train_state._state_fns(method, ecfg, cfg, train_state.optimizer_for(method, ecfg, cfg)[0])
  n = sum(x.size for x in jax.tree_util.tree_leaves(jax.eval_shape(fresh_params)))
  assert r.params == n > 0
  # Params + two Adam moments of float32, sharded over fsdp=4 (small vectors replicated): the
  # per-device arguments hold at least a quarter of them.
  assert r.argument_gib * aot.GIB >= 3 * 4 * n / 4
  assert r.temp_gib > 0 and r.hbm_gib is None and r.fits is None
  assert r.total_gib == pytest.approx(r.argument_gib + r.output_gib - r.alias_gib + r.temp_gib
                                      + r.code_gib)
  assert "| tiny | cpu:8 (8) | data=2 fsdp=4 |" in aot.markdown([r])


def test_bad_topology_and_batch_are_named():
  with pytest.raises(ClowlabError, match="v9x:4x4.*v5e:4x4"):
    aot.check(tiny_cfg(), "v9x:4x4")
  with pytest.raises(ClowlabError, match="cpu:64.*8 CPU devices"):
    aot.check(tiny_cfg(), "cpu:64")
  with pytest.raises(ClowlabError, match="batch_size=12 is not divisible by the 8"):
    aot.check(tiny_cfg(batch_size=12), "cpu:8")
  with pytest.raises(ClowlabError, match="init_from=/nonexistent"):
    aot.encoder_config(tiny_cfg(init_from="/nonexistent", tokenizer=""))


def test_cli_errors_are_one_line(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  for args, want in ((["--config=configs/nope.py"], "no such file configs/nope.py"),
                     (["--config=configs/mlm.py:runlocal", "--config.optim.lrr=1"], "lrr")):
    p = subprocess.run([sys.executable, "-m", "clowlab.aot", *args, "--topology=cpu:2"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert want in p.stderr and "Traceback" not in p.stderr, p.stderr


needs_libtpu = pytest.mark.skipif(not _libtpu(), reason="libtpu not installed (pip install libtpu)")


@pytest.fixture(scope="module")
def tpu_small():
  # A TPU v5e 2x2 slice (4 chips) described by libtpu on this CPU machine.
  return aot.check(tiny_cfg(mesh={"data": 1, "fsdp": -1}, batch_size=8), "v5e:2x2", name="tiny")


@needs_libtpu
def test_compiles_for_a_tpu_topology(tpu_small):
  r = tpu_small
  assert r.devices == 4 and r.mesh == {"data": 1, "fsdp": 4}
  assert r.hbm_gib == 16 and r.fits is True and 0 < r.total_gib < 1


@needs_libtpu
def test_tpu_memory_grows_with_the_batch(tpu_small):
  big = aot.check(tiny_cfg(mesh={"data": 1, "fsdp": -1}, batch_size=64), "v5e:2x2")
  assert big.temp_gib > tpu_small.temp_gib
  # The extra 56 rows of the batch (6 int32/float32 fields of 32 tokens + an index each) over the
  # 4 chips are in the arguments at least (TPU tiles pad the 32-token minor dim further).
  grown = (big.argument_gib - tpu_small.argument_gib) * aot.GIB
  assert grown >= 56 * (6 * 4 * 32 + 4) / 4


@needs_libtpu
def test_a_step_that_cannot_fit_is_reported_not_raised():
  # 32768 rows x 512 tokens over 4 chips: the attention scores alone exceed a v5e's 16 GiB.
  cfg = tiny_cfg(mesh={"data": 1, "fsdp": -1}, batch_size=32768, seq_len=512,
                 **{"model.max_position_embeddings": 512})
  r = aot.check(cfg, "v5e:2x2", name="too_big")
  assert r.fits is False and "CompileTimeHbmOom" in r.oom
  assert r.temp_gib > 16
  assert "(XLA: out of HBM) | 16 | **no** |" in aot.markdown([r])
