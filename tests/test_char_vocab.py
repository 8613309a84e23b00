"""Character-level Chinese BERT tokenizer built from a corpus ("chars:N")."""
import os

import ml_collections
import pytest
import transformers

from clowlab import train
from clowlab.data import char_vocab
from clowlab.data.tokenizers import load_tokenizer
from clowlab.errors import ClowlabError

TEXTS = ["iPhone很好用，价格199元。", "我很喜欢这个手机，很好！", "Café 的咖啡很好喝。",
         "价格有点贵，但是质量很好。", "IPHONE和iPad都很好用"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  path = tmp_path_factory.mktemp("corpus") / "zh.txt"
  path.write_text("\n".join(TEXTS) + "\n\n", encoding="utf-8")
  return str(path)


@pytest.fixture(scope="module")
def tok_dir(corpus, tmp_path_factory):
  return char_vocab.build_char_tokenizer([corpus], str(tmp_path_factory.mktemp("tok")), 1000)


def _vocab(tok_dir):
  return open(os.path.join(tok_dir, "vocab.txt"), encoding="utf-8").read().splitlines()


def test_vocab_order_and_files(corpus, tok_dir):
  assert {"vocab.txt", "tokenizer.json", "tokenizer_config.json",
          "special_tokens_map.json"} <= set(os.listdir(tok_dir))
  vocab = _vocab(tok_dir)
  assert vocab[:6] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "很"]  # 很: most frequent
  # Lowercased, accents stripped; word-initial and continuation forms counted apart.
  assert {"i", "##p", "##h", "##o", "##n", "##e", "c", "##a", "##f", "1", "##9"} <= set(vocab)
  assert "I" not in vocab and "##é" not in vocab and "##很" not in vocab and "p" not in vocab
  counts = char_vocab.count_chars([corpus])
  assert counts["i"] == 3 and counts["##p"] == 3 and counts["##9"] == 2 and counts["很"] == 6
  # Descending count; ties in code-point order, a character before its continuation form.
  keys = [(-counts[t], t.removeprefix("##"), t.startswith("##")) for t in vocab[5:]]
  assert keys == sorted(keys) and len(vocab) == len(counts) + 5


def test_hf_and_clowlab_agree_and_nothing_is_unknown(tok_dir):
  hf = transformers.AutoTokenizer.from_pretrained(tok_dir)
  ours = load_tokenizer(tok_dir)
  assert len(hf) == len(_vocab(tok_dir)) == ours.vocab_size
  ids = hf(TEXTS)["input_ids"]
  assert ids == ours.encode(TEXTS, max_len=64)["input_ids"]
  assert all(hf.unk_token_id not in row for row in ids)
  assert hf.convert_ids_to_tokens(ids[0])[:8] == ["[CLS]", "i", "##p", "##h", "##o", "##n", "##e",
                                                  "很"]
  assert hf.convert_ids_to_tokens(ids[0])[-1] == "[SEP]"
  assert hf("手机很贵", "好")["token_type_ids"] == [0] * 6 + [1] * 2
  assert hf.unk_token_id in hf("狗")["input_ids"]  # unseen character


def test_jieba_word_ids(tok_dir, tmp_path):
  pytest.importorskip("jieba")
  tok = load_tokenizer(tok_dir, word_segmenter="jieba", jieba_cache_dir=str(tmp_path))
  out = tok.encode(["价格很好"], max_len=16)
  assert out["input_ids"] == load_tokenizer(tok_dir).encode(["价格很好"], max_len=16)["input_ids"]
  words = out["word_ids"][0]
  assert words[0] == words[-1] == -1 and words[1] == words[2]  # 价格 is one jieba word


def test_vocab_size_cap_and_min_count(corpus, tmp_path):
  small = char_vocab.build_char_tokenizer([corpus], str(tmp_path / "s"), 12)
  vocab = _vocab(small)
  assert len(vocab) == 12 and vocab[5] == "很"
  assert len(transformers.AutoTokenizer.from_pretrained(small)) == 12
  frequent = char_vocab.vocab_from_counts(char_vocab.count_chars([corpus]), 1000, min_count=3)
  assert "很" in frequent and "咖" not in frequent
  with pytest.raises(ClowlabError, match="chars:8000"):
    char_vocab.build_char_tokenizer([corpus], str(tmp_path / "t"), 5)


def _cfg(spec, corpus):
  return ml_collections.ConfigDict({"tokenizer": spec, "init_from": "",
                                    "data": {"train": [corpus]}})


def test_resolve_tokenizer_builds_chars(corpus, tmp_path):
  tok = train.resolve_tokenizer(_cfg("chars:300", corpus), str(tmp_path), spm_text=lambda: [corpus])
  assert not os.path.exists(tmp_path / "tokenizer.tmp")
  assert _vocab(str(tmp_path / "tokenizer"))[:5] == list(char_vocab.SPECIALS)
  assert tok.encode(["很好"], max_len=8)["input_ids"][0][0] == 2  # [CLS]
  with pytest.raises(ClowlabError, match=r"integer, e\.g\. 'chars:8000'"):
    train.resolve_tokenizer(_cfg("chars:abc", corpus), str(tmp_path / "w2"))


def test_same_template_as_m3e(tok_dir, m3e_dir):
  m3e = transformers.AutoTokenizer.from_pretrained(str(m3e_dir))
  ours = transformers.AutoTokenizer.from_pretrained(tok_dir)
  for tok in (m3e, ours):
    enc = tok("价格很好", "手机")
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == [
        "[CLS]", "价", "格", "很", "好", "[SEP]", "手", "机", "[SEP]"]
    assert enc["token_type_ids"] == [0] * 6 + [1] * 3
