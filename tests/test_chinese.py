"""jieba segmentation and its alignment to a character-level Chinese BERT tokenizer (m3e-small)."""
import importlib.util
import os
import pathlib
import pickle

import pytest

from clowlab.data import chinese
from clowlab.data.tokenizers import load_tokenizer
from clowlab.errors import ClowlabError

jieba = pytest.importorskip("jieba")

DEMO = pathlib.Path(__file__).resolve().parents[1] / "clowlab" / "demo_data"


def _zh_sentences(n):
  with open(DEMO / "zh_sentences.txt", encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()][:n]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("jieba_cache"))


@pytest.fixture(scope="module")
def segmenter(cache_dir):
  return chinese.JiebaSegmenter(cache_dir=cache_dir)


@pytest.fixture(scope="module")
def m3e(cache_dir):
  spec = importlib.util.find_spec("embedding")  # located, never imported (research-only license)
  if spec is None or spec.origin is None:
    pytest.skip("fixture package embedding (m3e-small) is not installed")
  path = pathlib.Path(spec.origin).parent / "m3e-small"
  if not (path / "tokenizer.json").is_file():
    pytest.skip(f"{path} not present")
  return load_tokenizer(str(path), word_segmenter="jieba", jieba_cache_dir=cache_dir)


def test_segment_spans(segmenter, cache_dir):
  text = "两辆绿白相间的火车坐在铁轨上。 我买了iPhone12手机"
  spans = segmenter.segment(text)
  assert [text[s:e] for s, e in spans] == [
      "两辆", "绿白", "相间", "的", "火车", "坐在", "铁轨", "上", "。", "我", "买", "了", "iPhone12",
      "手机"]
  # The prefix-dict cache goes to the given dir; jieba's module-level tokenizer is untouched.
  assert os.listdir(cache_dir) == ["jieba.cache"]
  assert jieba.dt.tmp_dir is None and jieba.dt.cache_file is None
  assert chinese.segment(text, cache_dir=cache_dir) == spans


def test_user_dict(tmp_path, cache_dir):
  user_dict = tmp_path / "user.txt"
  user_dict.write_text("绿白相间 1000\n", encoding="utf-8")
  seg = chinese.JiebaSegmenter(str(user_dict), cache_dir=cache_dir)
  text = "两辆绿白相间的火车"
  assert [text[s:e] for s, e in seg.segment(text)] == ["两辆", "绿白相间", "的", "火车"]
  again = pickle.loads(pickle.dumps(seg))
  assert again.segment(text) == seg.segment(text)


def test_missing_user_dict(tmp_path):
  with pytest.raises(ClowlabError, match="does not exist"):
    chinese.JiebaSegmenter(str(tmp_path / "nope.txt"))


def test_token_word_ids():
  # Two tokens per word, a special token with no characters, and a token straddling two words.
  offsets = [(0, 0), (0, 1), (1, 2), (2, 3), (3, 5), (5, 6), (0, 0)]
  spans = [(0, 2), (2, 4), (4, 6)]
  assert chinese.token_word_ids(offsets, spans) == [-1, 0, 0, 1, 1, 1, -1]  # (3,5) merges 1 and 2
  # Characters outside every span (e.g. dropped whitespace) make a word of their own.
  assert chinese.token_word_ids([(0, 1), (1, 2), (3, 4)], [(0, 2)]) == [0, 0, 1]
  assert chinese.word_token_spans([-1, 0, 0, 1, 1, 1, -1]) == [(1, 3), (3, 6)]
  assert chinese.word_char_spans([-1, 0, 0, 1, 1, 1, -1], offsets) == [(0, 2), (2, 6)]


def test_m3e_jieba_word_ids_on_real_sentences(m3e, segmenter):
  texts = _zh_sentences(300)
  out = m3e.encode(texts, max_len=512, return_offsets=True)
  multi_char = 0
  for text, ids, words, offsets in zip(texts, out["input_ids"], out["word_ids"],
                                       out["offsets"]):
    spans = segmenter.segment(text)
    assert words[0] == words[-1] == -1 and ids[0] == m3e.cls_id and ids[-1] == m3e.sep_id
    # Word w covers exactly the characters of jieba word w, with contiguous tokens.
    assert chinese.word_char_spans(words, offsets) == spans
    token_spans = chinese.word_token_spans(words)
    assert len(token_spans) == len(spans)
    for (cs, ce), (ts, te) in zip(spans, token_spans):
      assert all(cs <= offsets[t][0] < offsets[t][1] <= ce for t in range(ts, te))
      assert len({words[t] for t in range(ts, te)}) == 1
      multi_char += (ce - cs) > 1 and (te - ts) > 1
  assert multi_char > 500  # most jieba words here have several characters and tokens


def test_m3e_jieba_mixed_text(m3e):
  text = "我买了iPhone12手机，价格3.5万元。"
  out = m3e.encode([text], max_len=64, return_offsets=True)
  words, offsets = out["word_ids"][0], out["offsets"][0]
  by_word = {}
  for w, (s, e) in zip(words, offsets):
    if w >= 0:
      by_word.setdefault(w, []).append(text[s:e])
  assert list(by_word.values()) == [
      ["我"], ["买"], ["了"], ["iPhone12"], ["手", "机"], ["，"], ["价", "格"], ["3", ".", "5"],
      ["万", "元"], ["。"]]


def test_m3e_jieba_pairs_and_truncation(m3e):
  a, b = "两辆绿白相间的火车坐在铁轨上。", "一只白猫站在地上。"
  out = m3e.encode([a], [b], max_len=64)
  words, types = out["word_ids"][0], out["token_type_ids"][0]
  n_a = max(w for w, t in zip(words, types) if t == 0) + 1
  assert n_a == 9 and min(w for w, t in zip(words, types) if t == 1 and w >= 0) == n_a
  assert max(words) == n_a + 6 - 1  # 一只 白猫 站 在 地上 。
  short = m3e.encode([a], [b], max_len=10)
  assert len(short["input_ids"][0]) == 10
  assert sorted(set(short["word_ids"][0]) - {-1}) == list(range(max(short["word_ids"][0]) + 1))


def test_m3e_ids_do_not_depend_on_jieba(m3e):
  plain = load_tokenizer(m3e.name)
  texts = _zh_sentences(20)
  assert m3e.encode(texts, max_len=32)["input_ids"] == plain.encode(texts, max_len=32)["input_ids"]
  assert pickle.loads(pickle.dumps(m3e)).encode(texts, max_len=32) == m3e.encode(texts, max_len=32)


def test_fingerprint_follows_word_segmentation(m3e, tmp_path, cache_dir):
  plain = load_tokenizer(m3e.name)
  assert m3e.fingerprint != plain.fingerprint  # same ids, different word_ids
  user_dict = tmp_path / "user.txt"
  user_dict.write_text("绿白相间 1000\n", encoding="utf-8")
  custom = load_tokenizer(m3e.name, word_segmenter="jieba", jieba_dict=str(user_dict),
                          jieba_cache_dir=cache_dir)
  assert custom.fingerprint != m3e.fingerprint
  elsewhere = load_tokenizer(m3e.name, word_segmenter="jieba", jieba_cache_dir=str(tmp_path))
  assert elsewhere.fingerprint == m3e.fingerprint  # the cache location does not matter
