"""HF interop: parity with PyTorch transformers, round trips, the CLI contract, bad checkpoints."""
import json
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from clowlab import checkpoint, convert
from clowlab.convert import hf
from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc
from clowlab.models import heads

SENTENCES = [
    "A man is playing a guitar on the stage.",
    "The quick brown fox jumps over the lazy dog near the bank of the river this morning.",
    "Hi!",
    "Transformers encode sentences; contrastive learning makes those embeddings useful.",
]


def _encode_jax(model, batch):
  fn = jax.jit(lambda p, i, a, t: enc.encode(p, i, a, t, cfg=model.cfg))
  return fn(model.params, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


def _max_abs(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


@pytest.fixture(scope="module")
def minilm(minilm_dir):
  return hf.load_hf(minilm_dir)


@pytest.fixture(scope="module")
def minilm_batch(minilm_dir):
  transformers = pytest.importorskip("transformers")
  tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
  return dict(tok(SENTENCES, padding=True, return_tensors="np"))


def test_minilm_hidden_states_match_pytorch(minilm, minilm_dir, minilm_batch):
  torch = pytest.importorskip("torch")
  import transformers  # noqa: PLC0415
  ref = transformers.BertModel.from_pretrained(str(minilm_dir)).eval()
  with torch.no_grad():
    want = ref(**{k: torch.tensor(v) for k, v in minilm_batch.items()},
               output_hidden_states=True)
  got = _encode_jax(minilm, minilm_batch)
  assert got.hidden_states_NBLD.shape[0] == len(want.hidden_states) == 7
  real = minilm_batch["attention_mask"][None, ..., None] > 0
  diff_NBLD = np.abs(np.asarray(got.hidden_states_NBLD) - np.stack([w.numpy() for w in
                                                                    want.hidden_states]))
  print("MiniLM max-abs per hidden state, real tokens:",
        ["%.1e" % d for d in np.where(real, diff_NBLD, 0).max((1, 2, 3))],
        "| pad positions:", ["%.1e" % d for d in diff_NBLD.max((1, 2, 3))])
  assert np.where(real, diff_NBLD, 0).max() < 1e-4
  # Pad positions are ill-conditioned (float32 error vs a float64 reference is ~5e-5 for
  # PyTorch itself there); every pooler ignores them. Bound them loosely so a bug still shows.
  assert diff_NBLD.max() < 5e-4
  assert _max_abs(enc.pooler(minilm.params, got.cls_BD), want.pooler_output.numpy()) < 1e-4


def test_minilm_mean_pooling_matches_sentence_transformers(minilm, minilm_dir, minilm_batch):
  pytest.importorskip("torch")
  st = pytest.importorskip("sentence_transformers")
  model = st.SentenceTransformer(str(minilm_dir), device="cpu")
  want = model.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)
  got = _encode_jax(minilm, minilm_batch).last_BLD
  m = minilm_batch["attention_mask"][..., None].astype(np.float32)
  mean = np.asarray(got).astype(np.float64) * m
  mean = mean.sum(1) / m.sum(1)
  mean /= np.linalg.norm(mean, axis=-1, keepdims=True)  # all-MiniLM-L6-v2 ends with Normalize
  cos = np.sum(mean * want, -1) / np.linalg.norm(want, axis=-1)
  print("MiniLM cosine vs sentence-transformers:", cos.min())
  assert cos.min() >= 0.99999


def test_import_export_import_is_bit_identical(minilm, minilm_dir, tmp_path):
  out = hf.save_hf(tmp_path / "exported", minilm.params, minilm.cfg, tokenizer_dir=minilm_dir)
  again = hf.load_hf(out)
  assert again.cfg == minilm.cfg
  jax.tree_util.tree_map(np.testing.assert_array_equal, again.params, minilm.params)
  # Exported tensors equal the original file's, name by name.
  orig = load_file(str(minilm_dir / "model.safetensors"))
  exported = load_file(str(tmp_path / "exported" / "model.safetensors"))
  for name, t in exported.items():
    np.testing.assert_array_equal(t, orig[name], err_msg=name)
  assert set(orig) - set(exported) == {"embeddings.position_ids"}


def test_exported_dir_loads_in_automodel_without_missing_keys(minilm, minilm_dir, tmp_path,
                                                              minilm_batch):
  torch = pytest.importorskip("torch")
  import transformers  # noqa: PLC0415
  out = hf.save_hf(tmp_path / "m", minilm.params, minilm.cfg, tokenizer_dir=minilm_dir)
  model, info = transformers.AutoModel.from_pretrained(out, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  tok = transformers.AutoTokenizer.from_pretrained(out)
  assert tok(SENTENCES)["input_ids"] == [list(r[r > 0]) for r in minilm_batch["input_ids"]]
  with torch.no_grad():
    h = model.eval()(**{k: torch.tensor(v) for k, v in minilm_batch.items()}).last_hidden_state
  assert _max_abs(_encode_jax(minilm, minilm_batch).last_BLD, h.numpy()) < 1e-4


XLMR = enc.EncoderConfig(vocab_size=250, hidden_size=64, num_layers=2, num_heads=4,
                         intermediate_size=128, max_position_embeddings=66, type_vocab_size=1,
                         position_offset=2, pad_token_id=1, layer_norm_eps=1e-5,
                         model_type="xlm-roberta")


@pytest.mark.parametrize("with_head", [False, True])
def test_random_xlmr_export_matches_pytorch(tmp_path, with_head):
  torch = pytest.importorskip("torch")
  import transformers  # noqa: PLC0415
  params = enc.init_params(jax.random.key(0), XLMR)
  head = heads.init_mlm_head(jax.random.key(1), XLMR) if with_head else None
  # Non-trivial LayerNorm/bias values so a transposed or swapped tensor cannot pass.
  params = jax.tree_util.tree_map(
      lambda x: x + 0.05 * jax.random.normal(jax.random.key(2), x.shape), params)
  out = hf.save_hf(tmp_path / "xlmr", params, XLMR, mlm_head=head)
  cls = transformers.XLMRobertaForMaskedLM if with_head else transformers.XLMRobertaModel
  model, info = cls.from_pretrained(out, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  rng = np.random.default_rng(0)
  ids = rng.integers(3, 250, size=(3, 17))
  ids[:, 0], ids[1, 9], ids[1, 10:], ids[2, 4:] = 0, 2, 1, 1
  mask = (ids != 1).astype(np.int64)
  got = enc.encode(params, jnp.asarray(ids), jnp.asarray(mask), cfg=XLMR)
  with torch.no_grad():
    want = model.eval()(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                        output_hidden_states=True)
  hs = want.hidden_states
  assert max(_max_abs(g, w.numpy()) for g, w in zip(got.hidden_states_NBLD, hs)) < 1e-4
  if with_head:
    logits = heads.mlm_logits(head, params["embeddings"]["word"], got.last_BLD, XLMR)
    assert _max_abs(logits, want.logits.numpy()) < 1e-4
    again = hf.load_hf(out)
    jax.tree_util.tree_map(np.testing.assert_array_equal, again.mlm_head,
                           jax.tree_util.tree_map(np.asarray, head))


def test_m3e_small_pytorch_bin_matches(m3e_dir):
  torch = pytest.importorskip("torch")
  import transformers  # noqa: PLC0415
  model = hf.load_hf(m3e_dir)
  assert model.cfg.vocab_size == 21128 and model.cfg.num_layers == 4
  tok = transformers.AutoTokenizer.from_pretrained(str(m3e_dir))
  batch = dict(tok(["今天天气很好，我们去公园散步吧。", "机器学习", "这家酒店的服务非常周到，房间也很干净。"],
                   padding=True, return_tensors="np"))
  ref = transformers.BertModel.from_pretrained(str(m3e_dir)).eval()
  with torch.no_grad():
    want = ref(**{k: torch.tensor(v) for k, v in batch.items()}, output_hidden_states=True)
  got = _encode_jax(model, batch)
  diffs = [_max_abs(g, w.numpy()) for g, w in zip(got.hidden_states_NBLD, want.hidden_states)]
  print("m3e-small max-abs per hidden state:", ["%.2e" % d for d in diffs])
  assert max(diffs) < 1e-4


def _tiny_hf_dir(tmp_path, **cfg_overrides):
  cfg = enc.EncoderConfig(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2,
                          intermediate_size=32, max_position_embeddings=20)
  params = enc.init_params(jax.random.key(0), cfg)
  d = hf.save_hf(tmp_path / "tiny", params, cfg)
  if cfg_overrides:
    c = json.loads((tmp_path / "tiny" / "config.json").read_text())
    c.update(cfg_overrides)
    (tmp_path / "tiny" / "config.json").write_text(json.dumps(c))
  return d


def test_wrong_tensor_shape_is_named(tmp_path):
  d = _tiny_hf_dir(tmp_path)
  t = load_file(f"{d}/model.safetensors")
  t["encoder.layer.1.intermediate.dense.weight"] = np.zeros((31, 16), np.float32)
  save_file(t, f"{d}/model.safetensors")
  with pytest.raises(ClowlabError, match=r"encoder\.layer\.1\.intermediate\.dense\.weight .*"
                                         r"shape \(31, 16\), expected \(32, 16\)"):
    hf.load_hf(d)


def test_missing_tensor_is_named(tmp_path):
  d = _tiny_hf_dir(tmp_path)
  t = load_file(f"{d}/model.safetensors")
  del t["encoder.layer.0.attention.self.key.bias"]
  save_file(t, f"{d}/model.safetensors")
  with pytest.raises(ClowlabError, match=r"lacks tensor encoder\.layer\.0\.attention\.self\.key"
                                         r"\.bias \(expected shape \(16,\)"):
    hf.load_hf(d)


def test_bad_directories(tmp_path):
  with pytest.raises(ClowlabError, match="does not exist"):
    hf.load_hf(tmp_path / "nope")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ClowlabError, match="config.json is missing"):
    hf.load_hf(tmp_path / "empty")
  d = _tiny_hf_dir(tmp_path, model_type="gpt2")
  with pytest.raises(ClowlabError, match="model_type='gpt2'; clowlab imports bert, roberta, "
                                         "xlm-roberta"):
    hf.load_hf(d)
  (tmp_path / "tiny" / "model.safetensors").unlink()
  (tmp_path / "tiny" / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size":
      50, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
      "intermediate_size": 32}))
  with pytest.raises(ClowlabError, match="looked for model.safetensors"):
    hf.load_hf(tmp_path / "tiny")


def test_export_refuses_nonempty_dir(tmp_path):
  d = _tiny_hf_dir(tmp_path)
  m = hf.load_hf(d)
  with pytest.raises(ClowlabError, match="exists and is not empty"):
    hf.save_hf(d, m.params, m.cfg)


def test_tokenizer_vocab_mismatch_is_refused(minilm_dir, tmp_path):
  d = tmp_path / "mismatch"
  shutil.copytree(minilm_dir, d)
  c = json.loads((d / "config.json").read_text())
  c["vocab_size"] = 30000
  (d / "config.json").write_text(json.dumps(c))
  t = load_file(str(d / "model.safetensors"))
  t["embeddings.word_embeddings.weight"] = t["embeddings.word_embeddings.weight"][:30000]
  save_file(t, str(d / "model.safetensors"))
  with pytest.raises(ClowlabError, match="vocab_size=30000 but the tokenizer"):
    convert.import_to_workdir(d, tmp_path / "w")
  assert checkpoint.latest_step(tmp_path / "w") is None


@pytest.mark.slow
def test_cli_import_export_contract(minilm_dir, tmp_path):
  w, out = tmp_path / "w", tmp_path / "hf_out"
  run = lambda *a: subprocess.run([sys.executable, "-m", "clowlab.convert", *a],
                                  capture_output=True, text=True, timeout=300)
  r = run("import", f"--hf_dir={minilm_dir}", f"--workdir={w}")
  assert r.returncode == 0, r.stderr
  assert "imported" in r.stdout and checkpoint.latest_step(w) == 0
  r = run("export", f"--workdir={w}", f"--out={out}")
  assert r.returncode == 0, r.stderr
  orig = load_file(str(minilm_dir / "model.safetensors"))
  for name, t in load_file(str(out / "model.safetensors")).items():
    np.testing.assert_array_equal(t, orig[name], err_msg=name)
  assert (out / "tokenizer.json").exists() and (out / "vocab.txt").exists()
  # A second import into the same workdir is refused, and the first checkpoint survives.
  r = run("import", f"--hf_dir={minilm_dir}", f"--workdir={w}")
  assert r.returncode == 2 and "already holds checkpoints" in r.stderr
  assert "Traceback" not in r.stderr
  r = run("export", f"--workdir={tmp_path / 'nothing'}", f"--out={tmp_path / 'x'}")
  assert r.returncode == 2 and "no checkpoint in" in r.stderr
