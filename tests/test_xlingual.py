"""Cross-lingual evaluators: Tatoeba retrieval accuracies and cross-lingual STS correlations
known by construction (fake embedders), their user errors, one-layer pooling, the CLI on a tiny
model, and the real Tatoeba / stsb_multi_mt files."""
import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from scipy import stats

from clowlab import embed, evaluate
from clowlab.errors import ClowlabError
from clowlab.evaluators import xlingual
from clowlab.models import encoder as enc
from clowlab.models import poolers

from conftest import REPO
from test_finetune import FILLER, tiny, tiny_dirs  # noqa: F401  (module-scoped fixtures)


class AngleEmbedder:
  """Text "<tag><degrees>" -> the unit vector at that angle; records every call."""

  def __init__(self):
    self.calls = []

  def __call__(self, texts):
    self.calls.append(list(texts))
    rad = np.deg2rad([float(t[1:]) for t in texts])
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def _write_lines(path, lines):
  path.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")


def _tatoeba_dir(root, langs):
  """langs: {xxx: (source angles, English angles)} -> tatoeba.xxx-eng.{xxx,eng} files."""
  d = root / "tatoeba"
  d.mkdir()
  for lang, (src, eng) in langs.items():
    _write_lines(d / f"tatoeba.{lang}-eng.{lang}", [f"x{a}" for a in src])
    _write_lines(d / f"tatoeba.{lang}-eng.eng", [f"e{a}" for a in eng])
  (d / "README.md").write_text("not a Tatoeba file\n")
  return d


# ---------------------------------------------------------------------------------------------
# Tatoeba


def test_tatoeba_accuracies_known_by_construction(tmp_path):
  d = _tatoeba_dir(tmp_path, {
      # identity: every sentence finds its translation both ways.
      "aaa": ([0, 40, 80, 120], [0, 40, 80, 120]),
      # x20 is nearest to e11 (line 1), not e50 (line 2): xx->en 2/3; every English line finds
      # its own source line: en->xx 3/3.
      "bbb": ([0, 10, 20], [0, 11, 50]),
      # lines 1 and 2 of the English side swapped: 2 of 4 right both ways.
      "ccc": ([0, 40, 80, 120], [0, 80, 40, 120]),
  })
  emb = AngleEmbedder()
  r = xlingual.tatoeba(emb, d)
  want = {"aaa": (100.0, 100.0), "bbb": (200 / 3, 100.0), "ccc": (50.0, 50.0)}
  for lang, (xx2en, en2xx) in want.items():
    assert r[f"tatoeba_{lang}_xx2en"] == pytest.approx(xx2en)
    assert r[f"tatoeba_{lang}_en2xx"] == pytest.approx(en2xx)
    assert r[f"tatoeba_{lang}"] == pytest.approx((xx2en + en2xx) / 2)
  assert r["tatoeba_avg_xx2en"] == pytest.approx((100 + 200 / 3 + 50) / 3)
  assert r["tatoeba_avg_en2xx"] == pytest.approx((100 + 100 + 50) / 3)
  assert r["tatoeba_avg"] == pytest.approx(np.mean([100, (200 / 3 + 100) / 2, 50]))
  assert len(r) == 3 * 3 + 3 and all(isinstance(v, float) for v in r.values())
  # One embedder call, each distinct sentence once (e0, x0, ... recur across languages).
  assert len(emb.calls) == 1 and len(emb.calls[0]) == len(set(emb.calls[0])) == 12

  sub = xlingual.tatoeba(AngleEmbedder(), d, "ccc")  # a comma-separated string works too
  assert set(sub) == {"tatoeba_ccc", "tatoeba_ccc_xx2en", "tatoeba_ccc_en2xx", "tatoeba_avg",
                      "tatoeba_avg_xx2en", "tatoeba_avg_en2xx"}
  assert sub["tatoeba_avg"] == pytest.approx(50.0)
  assert xlingual.tatoeba_languages(d) == ["aaa", "bbb", "ccc"]
  assert xlingual.tatoeba_sentences(d, ["bbb"]) == {"x0", "x10", "x20", "e0", "e11", "e50"}


def test_tatoeba_user_errors(tmp_path):
  d = _tatoeba_dir(tmp_path, {"aaa": ([0, 1, 2], [0, 1]), "bbb": ([0], [0])})
  with pytest.raises(ClowlabError, match=r"tatoeba\.aaa-eng\.aaa has 3 lines but .*"
                                         r"tatoeba\.aaa-eng\.eng has 2"):
    xlingual.tatoeba(AngleEmbedder(), d)
  with pytest.raises(ClowlabError, match=r"'zzz'.*tatoeba\.zzz-eng\.zzz is missing; languages "
                                         r"present in .*: aaa, bbb\."):
    xlingual.tatoeba(AngleEmbedder(), d, ["bbb", "zzz"])
  with pytest.raises(ClowlabError, match="languages present"):
    xlingual.tatoeba_sentences(d, "zzz")
  (d / "tatoeba.bbb-eng.eng").unlink()
  with pytest.raises(ClowlabError, match=r"tatoeba\.bbb-eng\.eng is missing"):
    xlingual.tatoeba(AngleEmbedder(), d, "bbb")
  with pytest.raises(ClowlabError, match="does not exist"):
    xlingual.tatoeba(AngleEmbedder(), tmp_path / "nope")
  with pytest.raises(ClowlabError, match="no tatoeba"):
    xlingual.tatoeba(AngleEmbedder(), tmp_path)


# ---------------------------------------------------------------------------------------------
# Cross-lingual STS


def _write_stsb(path, rows):
  path.write_text("".join(f"{a},{b},{s}\n" for a, b, s in rows), encoding="utf-8")


GOLD = [0.0, 1.0, 2.5, 5.0]


def _stsb_dir(root):
  d = root / "stsb"
  d.mkdir()
  # en-zz: sentence 1 (en) at 0 deg, sentence 2 (zz) at 90, 60, 30, 0: cosine rises with the
  # gold score, Spearman 100. zz-en: sentence 2 (en) at 60, 90, 30, 0: ranks 1, 0, 2, 3 ->
  # Spearman 1 - 6 * 2 / (4 * 15) = 0.8.
  _write_stsb(d / "stsb-en-test.csv", [("a0", f"b{x}", s) for x, s in zip((60, 90, 30, 0), GOLD)])
  _write_stsb(d / "stsb-zz-test.csv", [("c5", f"d{x}", s) for x, s in zip((90, 60, 30, 0), GOLD)])
  _write_stsb(d / "stsb-zz-dev.csv", [("c5", "d0", 1.0)])
  return d


def test_cross_lingual_sts_known_correlations(tmp_path):
  d = _stsb_dir(tmp_path)
  emb = AngleEmbedder()
  r = xlingual.cross_lingual_sts(emb, d, ["en-zz", "zz-en"])
  assert r["xsts_en_zz"] == pytest.approx(100.0)
  assert r["xsts_zz_en"] == pytest.approx(80.0)
  assert r["xsts_avg"] == pytest.approx(90.0)
  cos = np.cos(np.deg2rad([60, 90, 30, 0]) - np.deg2rad(5))
  assert r["xsts_zz_en_pearson"] == pytest.approx(100 * stats.pearsonr(cos, GOLD).statistic)
  assert set(r) == {"xsts_en_zz", "xsts_en_zz_pearson", "xsts_zz_en", "xsts_zz_en_pearson",
                    "xsts_avg"}
  assert len(emb.calls) == 1 and len(emb.calls[0]) == len(set(emb.calls[0])) == 10
  # Default pairs: en-<xx> for every other language of the split.
  assert set(xlingual.cross_lingual_sts(AngleEmbedder(), d)) == {"xsts_en_zz",
                                                                  "xsts_en_zz_pearson", "xsts_avg"}
  assert xlingual.stsb_languages(d, "dev") == ["zz"]


def test_cross_lingual_sts_user_errors(tmp_path):
  d = _stsb_dir(tmp_path)
  _write_stsb(d / "stsb-yy-test.csv", [("c5", "d0", s) for s in (0.0, 1.0, 2.0, 5.0)])
  with pytest.raises(ClowlabError, match=r"stsb-en-test\.csv and .*stsb-yy-test\.csv are not "
                                         r"aligned: data row 3 has score 2\.5 in one and 2"):
    xlingual.cross_lingual_sts(AngleEmbedder(), d, "en-yy")
  _write_stsb(d / "stsb-yy-test.csv", [("c5", "d0", s) for s in GOLD[:3]])
  with pytest.raises(ClowlabError, match=r"not aligned: 4 and 3 rows"):
    xlingual.cross_lingual_sts(AngleEmbedder(), d, "en-yy")
  with pytest.raises(ClowlabError, match=r"stsb-qq-test\.csv is missing; languages with a 'test' "
                                         r"file in .*: en, yy, zz\."):
    xlingual.cross_lingual_sts(AngleEmbedder(), d, "en-qq")
  with pytest.raises(ClowlabError, match="not of the form a-b"):
    xlingual.cross_lingual_sts(AngleEmbedder(), d, "enzz")
  _write_stsb(d / "stsb-yy-test.csv", [("c5", "d0", "high")] * 4)
  with pytest.raises(ClowlabError, match=r"stsb-yy-test\.csv:1: score 'high' is not a number"):
    xlingual.cross_lingual_sts(AngleEmbedder(), d, "en-yy")


# ---------------------------------------------------------------------------------------------
# One-layer pooling

CFG = enc.EncoderConfig(vocab_size=30, hidden_size=8, num_layers=3, num_heads=2,
                        intermediate_size=16, max_position_embeddings=12)
IDS = np.array([[2, 5, 6, 7, 0, 0], [2, 9, 0, 0, 0, 0]], np.int32)
MASK = (IDS > 0).astype(np.int32)


def test_pool_layer():
  rng = np.random.default_rng(0)  # numpy init: jitting init_params costs seconds of compile
  params = jax.tree_util.tree_map(lambda s: rng.normal(0, 0.5, s.shape).astype(np.float32),
                                  enc.param_shapes(CFG))
  out = jax.jit(lambda p: enc.encode(p, IDS, MASK, cfg=CFG))(params)
  h = out.hidden_states_NBLD
  chex.assert_trees_all_close(poolers.pool_layer(out, MASK, "mean", -1),
                              poolers.pool(out, MASK, "mean"), rtol=1e-6)
  chex.assert_trees_all_close(poolers.pool_layer(out, MASK, "mean", 3),
                              poolers.pool(out, MASK, "mean"), rtol=1e-6)
  chex.assert_trees_all_close(poolers.pool_layer(out, MASK, "cls", 0), h[0][:, 0])
  chex.assert_trees_all_close(poolers.pool_layer(out, MASK, "mean", np.int64(1))[1],
                              np.asarray(h[1])[1, :2].mean(0), rtol=1e-5)
  chex.assert_shape(poolers.pool_layer(out, MASK, "cls", -4), (2, CFG.hidden_size))
  for bad in (4, -5):
    with pytest.raises(ClowlabError, match=rf"layer {bad} is out of range; this encoder has 3 "
                                           r"layers, so valid layers are 0\.\.3 .* or -4\.\.-1"):
      poolers.pool_layer(out, MASK, "mean", bad)
  with pytest.raises(ClowlabError, match="pooling 'first_last_avg' cannot be used with a layer; "
                                         "valid: mean, cls"):
    poolers.pool_layer(out, MASK, "first_last_avg", 1)
  # pooled_fn with a layer: cls_before_pooler is a synonym of cls (the raw CLS vector).
  batch = {"input_ids": IDS, "attention_mask": MASK, "token_type_ids": np.zeros_like(IDS)}
  chex.assert_trees_all_close(embed.pooled_fn(params, CFG, "cls_before_pooler", layer=2)(batch),
                              h[2][:, 0], rtol=1e-5, atol=1e-6)
  with pytest.raises(ClowlabError, match="out of range"):
    embed.pooled_fn(params, CFG, "mean", layer=7)  # refused before anything is compiled


# ---------------------------------------------------------------------------------------------
# Command line on a tiny model


def test_cli_tatoeba_and_xsts_on_a_tiny_model(tiny_dirs, tmp_path):
  hf_dir, workdir = tiny_dirs
  d = tmp_path / "tatoeba"
  d.mkdir()
  sents = [" ".join(FILLER[i:i + 3]) for i in range(0, 24, 3)]  # 8 distinct sentences
  for lang in ("aaa", "bbb"):  # identical "translations": 100 % both ways
    _write_lines(d / f"tatoeba.{lang}-eng.{lang}", sents)
    _write_lines(d / f"tatoeba.{lang}-eng.eng", sents)
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "JAX_PLATFORMS": "cpu"}
  p = subprocess.run([sys.executable, "-m", "clowlab.evaluate", "--task=tatoeba",
                      f"--model={hf_dir}", f"--data={d}", "--languages=aaa,bbb", "--seq_len=16",
                      "--pooling=cls", "--layer=1"],
                     capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
  assert p.returncode == 0, p.stderr[-3000:]
  lines = p.stdout.strip().splitlines()
  r = json.loads(lines[-1])
  assert r["task"] == "tatoeba" and "cls pooling of layer 1" in r["model"]
  assert r["tatoeba_avg"] == 100.0 and r["tatoeba_bbb_en2xx"] == 100.0
  assert "tatoeba_avg: 100.00" in lines

  # In process: xsts on a workdir with a middle layer; a bad layer is a user error.
  s = tmp_path / "stsb"
  s.mkdir()
  _write_stsb(s / "stsb-en-dev.csv", [(a, b, g) for a, b, g in zip(sents, sents[::-1], GOLD * 2)])
  _write_stsb(s / "stsb-de-dev.csv", [(b, a, g) for a, b, g in zip(sents, sents[::-1], GOLD * 2)])
  r = evaluate.run_cli("xsts", str(workdir), data=str(s), pairs="en-de,de-en", split="dev",
                       layer=0, seq_len=16)
  assert {"xsts_en_de", "xsts_de_en_pearson", "xsts_avg", "seconds"} <= set(r)
  assert "mean pooling of layer 0" in r["model"] and np.isfinite(r["xsts_avg"])
  with pytest.raises(ClowlabError, match="valid layers are 0..1"):
    evaluate.run_cli("tatoeba", str(hf_dir), data=str(d), layer=2)
  with pytest.raises(ClowlabError, match="needs --data=DIR"):
    evaluate.run_cli("xsts", str(hf_dir))


# ---------------------------------------------------------------------------------------------
# The real files


def test_real_tatoeba_and_stsb_multi_mt(shared_data):
  d = shared_data / "tatoeba"
  if not d.is_dir():
    pytest.skip(f"{d} not present")
  langs = xlingual.tatoeba_languages(d)
  assert langs == ["ara", "cmn", "deu", "fra", "hin", "jpn", "rus", "spa"]
  got = xlingual.tatoeba_sentences(d)
  want = set()
  for lang in langs:
    for side in (lang, "eng"):
      lines = (d / f"tatoeba.{lang}-eng.{side}").read_text(encoding="utf-8").split("\n")
      assert len(lines) == 1001 and lines[-1] == ""  # 1000 lines
      want.update(x.strip() for x in lines if x.strip())
  assert got == want
  assert 0.9 * 2 * 8 * 1000 < len(got) <= 2 * 8 * 1000  # duplicates (mostly English) removed
  first = (d / "tatoeba.cmn-eng.cmn").read_text(encoding="utf-8").split("\n")[0].strip()
  assert first == "我們試試看！" and first in got
  assert len(xlingual.tatoeba_sentences(d, "cmn")) <= 2000

  s = shared_data / "stsb_multi_mt"
  if not s.is_dir():
    pytest.skip(f"{s} not present")
  rng = np.random.default_rng(0)
  table = {}

  def noise(texts):
    return np.stack([table.setdefault(t, rng.normal(size=8)) for t in texts])

  r = xlingual.cross_lingual_sts(noise, s, "en-zh,zh-en", split="test")  # scores agree row by row
  assert abs(r["xsts_en_zh"]) < 10 and abs(r["xsts_avg"]) < 10  # random vectors: ~0
