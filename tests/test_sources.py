"""Sources: text / pairs / parallel files -> datasets with normalised columns, clear errors."""
import gzip
import os
import pathlib

import pytest

from clowlab.data import sources
from clowlab.errors import ClowlabError

DEMO = pathlib.Path(__file__).resolve().parents[1] / "clowlab" / "demo_data"


@pytest.fixture
def cache(tmp_path):
  return str(tmp_path / "cache")


def _write(path, text, *, gz=False, encoding="utf-8"):
  data = text.encode(encoding) if isinstance(text, str) else text
  if gz:
    with gzip.open(path, "wb") as f:
      f.write(data)
  else:
    path.write_bytes(data)
  return str(path)


# ---- plain text ---------------------------------------------------------------------------------

def test_text_demo_file(cache):
  ds = sources.load_text(DEMO / "en_wikitext2.txt", cache_dir=cache)
  assert ds.column_names == ["text"]
  lines = [l.strip() for l in open(DEMO / "en_wikitext2.txt", encoding="utf-8") if l.strip()]
  assert len(ds) == len(lines) and ds[0]["text"] == lines[0] and ds[-1]["text"] == lines[-1]


def test_text_many_files_gz_and_blank_lines(tmp_path, cache):
  a = _write(tmp_path / "a.txt", "first line\n\n   \n second line \n")
  b = _write(tmp_path / "b.txt.gz", "third\n\nfourth\n", gz=True)
  ds = sources.load_text([a, b], cache_dir=cache)
  assert list(ds["text"]) == ["first line", "second line", "third", "fourth"]


def test_text_cache_reused_and_invalidated(tmp_path, cache):
  path = tmp_path / "t.txt"
  _write(path, "one\ntwo\n")
  first = sources.load_text(str(path), cache_dir=cache)
  again = sources.load_text(str(path), cache_dir=cache)
  assert first.cache_files == again.cache_files
  assert first.cache_files[0]["filename"].startswith(cache)
  _write(path, "one\ntwo\nthree\n")
  assert len(sources.load_text(str(path), cache_dir=cache)) == 3


def test_nothing_written_next_to_sources(tmp_path, cache):
  data = tmp_path / "data"
  data.mkdir()
  path = _write(data / "t.txt", "x\ny\n")
  os.chmod(data, 0o555)  # read-only like /work/shared/data
  try:
    sources.load_text(path, cache_dir=cache)
  finally:
    os.chmod(data, 0o755)
  assert os.listdir(data) == ["t.txt"]


# ---- pairs --------------------------------------------------------------------------------------

def test_pairs_demo_csv_with_header(cache):
  ds = sources.load_pairs(DEMO / "sts_en_dev.csv", cache_dir=cache)  # columns guessed
  assert ds.column_names == ["text_a", "text_b", "label"] and len(ds) == 500
  assert ds[0] == {"text_a": "A man with a hard hat is dancing.",
                   "text_b": "A man wearing a hard hat is dancing.", "label": 5.0}
  zh = sources.load_pairs(DEMO / "sts_zh_dev.csv", columns=("sentence1", "sentence2", "score"),
                          cache_dir=cache)
  assert len(zh) == 500 and zh[1]["text_a"] == "一个小孩子在骑马。"


def test_pairs_headerless_csv_by_index_and_by_names(tmp_path, cache):
  path = _write(tmp_path / "stsb.csv",
                '"A man, a plan.","He said ""hi"", then left.",4.5\nx,y,0\n')
  by_index = sources.load_pairs(path, columns=(0, 1, 2), cache_dir=cache)
  assert by_index[0] == {"text_a": "A man, a plan.", "text_b": 'He said "hi", then left.',
                         "label": 4.5}
  by_name = sources.load_pairs(path, header=False, names=("s1", "s2", "score"),
                               columns=("s1", "s2", "score"), cache_dir=cache)
  assert by_name.to_list() == by_index.to_list()


def test_pairs_tsv_keeps_bare_quotes(tmp_path, cache):
  path = _write(tmp_path / "dev.tsv",
                'index\tsentence1\tsentence2\tscore\n0\tHe said "hi\tShe said "bye" twice\t3.2\n')
  ds = sources.load_pairs(path, columns=("sentence1", "sentence2", "score"), cache_dir=cache)
  assert ds[0]["text_a"] == 'He said "hi' and ds[0]["text_b"] == 'She said "bye" twice'


def test_pairs_jsonl_and_label_map(tmp_path, cache):
  path = _write(tmp_path / "nli.jsonl",
                '{"premise": "p1", "hypothesis": "h1", "gold": "entailment"}\n\n'
                '{"premise": "p2", "hypothesis": "h2", "gold": "contradiction"}\n')
  ds = sources.load_pairs(path, columns=("premise", "hypothesis", "gold"),
                          label_map={"entailment": 1, "contradiction": 0}, label_dtype="int64",
                          cache_dir=cache)
  assert list(ds["label"]) == [1, 0] and ds.features["label"].dtype == "int64"
  with pytest.raises(ClowlabError, match=r"line 1: label 'entailment'.*label_map"):
    sources.load_pairs(path, columns=("premise", "hypothesis", "gold"), cache_dir=cache)


def test_pairs_without_label(tmp_path, cache):
  path = _write(tmp_path / "p.tsv", "anchor\tpositive\nq\td\n")
  ds = sources.load_pairs(path, cache_dir=cache)
  assert ds.column_names == ["text_a", "text_b"] and ds[0] == {"text_a": "q", "text_b": "d"}


# ---- parallel -----------------------------------------------------------------------------------

def test_parallel_two_files(tmp_path, cache):
  en = _write(tmp_path / "v.en.gz", "Hello\nGood day\n\nBye\n", gz=True)
  de = _write(tmp_path / "v.de", "Hallo\nGuten Tag\nLeer\nTschüss\n")
  ds = sources.load_parallel(en, de, cache_dir=cache)
  assert ds.column_names == ["src", "tgt"]
  assert ds.to_list() == [{"src": "Hello", "tgt": "Hallo"}, {"src": "Good day", "tgt": "Guten Tag"},
                          {"src": "Bye", "tgt": "Tschüss"}]  # pair with a blank side skipped


def test_parallel_misaligned_names_both_files(tmp_path, cache):
  en = _write(tmp_path / "a.en", "1\n2\n3\n")
  de = _write(tmp_path / "a.de", "1\n2\n")
  with pytest.raises(ClowlabError, match=r"a\.en has 3 lines but .*a\.de has 2"):
    sources.load_parallel(en, de, cache_dir=cache)
  assert not list(pathlib.Path(cache).rglob("*.arrow"))  # a failed build leaves no cache


def test_parallel_one_file_two_columns(cache):
  ds = sources.load_parallel(DEMO / "parallel_en_zh.tsv", columns=("en", "zh"), cache_dir=cache)
  assert len(ds) == 1000 and ds[0] == {"src": "A plane is taking off.", "tgt": "一架飞机正在起飞。"}
  default = sources.load_parallel(DEMO / "parallel_en_de.tsv", cache_dir=cache)  # header skipped
  assert default[0] == {"src": "A plane is taking off.", "tgt": "Ein Flugzeug hebt gerade ab."}


# ---- errors -------------------------------------------------------------------------------------

def test_missing_file_is_named(cache):
  with pytest.raises(ClowlabError, match="not found: nope/missing.txt"):
    sources.load_text("nope/missing.txt", cache_dir=cache)


def test_wrong_column_lists_available(cache):
  with pytest.raises(ClowlabError) as e:
    sources.load_pairs(DEMO / "sts_en_dev.csv", columns=("sentence1", "sentence_2"),
                       cache_dir=cache)
  msg = str(e.value)
  assert "sts_en_dev.csv" in msg and "'sentence_2'" in msg
  assert "['sentence1', 'sentence2', 'score']" in msg


def test_empty_files(tmp_path, cache):
  with pytest.raises(ClowlabError, match="no non-blank lines"):
    sources.load_text(_write(tmp_path / "e.txt", "\n \n"), cache_dir=cache)
  with pytest.raises(ClowlabError, match="empty"):
    sources.load_pairs(_write(tmp_path / "e.csv", ""), columns=("a", "b"), cache_dir=cache)
  with pytest.raises(ClowlabError, match="no data rows"):
    sources.load_pairs(_write(tmp_path / "h.csv", "a,b\n"), columns=("a", "b"), cache_dir=cache)


def test_non_utf8_names_the_line(tmp_path, cache):
  path = _write(tmp_path / "latin1.txt", "fine\nalso fine\ncaf\xe9\n", encoding="latin-1")
  with pytest.raises(ClowlabError, match=r"latin1\.txt line 3 is not valid UTF-8"):
    sources.load_text(path, cache_dir=cache)


def test_ragged_row_and_unknown_format(tmp_path, cache):
  path = _write(tmp_path / "r.csv", "a,b,c\n1,2,3\n1,2\n")
  with pytest.raises(ClowlabError, match=r"r\.csv line 3 has 2 fields"):
    sources.load_pairs(path, columns=("a", "b", "c"), cache_dir=cache)
  with pytest.raises(ClowlabError, match="format="):
    sources.load_pairs(_write(tmp_path / "x.dat", "a\tb\n"), cache_dir=cache)


def test_pipes_format_parses_and_is_sniffed(tmp_path, cache):
  text = "\n2012-1||一个女孩在梳头。||一个女孩在给她的头发做发型。||2\n2012-2||a, \"b\"||c\td||5\n"
  for path in (_write(tmp_path / "p.txt", text), _write(tmp_path / "p.txt.gz", text, gz=True)):
    ds = sources.load_pairs(path, columns=(1, 2, 3), cache_dir=cache)  # sniffed, headerless
    assert ds["text_a"] == ["一个女孩在梳头。", 'a, "b"'] and ds["text_b"][1] == "c\td"
    assert ds["label"] == [2.0, 5.0]
  rows, lines = sources.read_columns(_write(tmp_path / "h.dat", "id||s1||s2\n7||x||y\n"),
                                     ("s2", "id"), format="pipes")
  assert rows == [("y", "7")] and lines == [2]
  with pytest.raises(ClowlabError, match="pipes"):  # no `||`: still unknown
    sources.load_pairs(_write(tmp_path / "t.txt", "a\tb\n"), cache_dir=cache)


def test_pipes_ragged_rows_name_the_line(tmp_path, cache):
  path = _write(tmp_path / "r.txt", "a||b||c\n1||2||3\n\n1||2\n")
  with pytest.raises(ClowlabError, match=r"r\.txt line 4 has 2 fields but the header has 3"):
    sources.load_pairs(path, columns=("a", "b", "c"), cache_dir=cache)
  path = _write(tmp_path / "n.txt", "1||2||3\n\n\n1||2\n")  # headerless: the row is short
  with pytest.raises(ClowlabError, match=r"n\.txt line 4 has 2 fields, so column index 2"):
    sources.load_pairs(path, columns=(0, 1, 2), cache_dir=cache)


# ---- real data (skipped without ../shared/data) -------------------------------------------------

def test_shared_stsb_multi_mt_headerless(shared_data, cache):
  ds = sources.load_pairs(shared_data / "stsb_multi_mt" / "stsb-en-dev.csv", columns=(0, 1, 2),
                          cache_dir=cache)
  assert len(ds) == 1500 and 0.0 <= min(ds["label"]) and max(ds["label"]) <= 5.0


def test_shared_glue_tsv_and_multi30k(shared_data, cache):
  sts = sources.load_pairs(shared_data / "glue" / "STS-B" / "dev.tsv",
                           columns=("sentence1", "sentence2", "score"), cache_dir=cache)
  assert len(sts) == 1500
  rte = sources.load_pairs(shared_data / "glue" / "RTE" / "dev.tsv",
                           label_map={"entailment": 1, "not_entailment": 0}, cache_dir=cache)
  assert len(rte) == 277 and set(rte["label"]) == {0.0, 1.0}
  m30k = shared_data / "parallel" / "multi30k"
  par = sources.load_parallel(m30k / "val.en.gz", m30k / "val.de.gz", cache_dir=cache)
  assert len(par) == 1014


def test_shared_cnsd_sts_pipes(shared_data, cache):
  from clowlab.evaluators import sts  # noqa: PLC0415
  ds = sts.load(str(shared_data / "zh_eval" / "cnsd_sts" / "cnsd-sts-test.txt"), (1, 2, 3),
                cache_dir=cache)
  assert len(ds) == 1361 and ds.features["label"].dtype == "float32"
  assert ds[0] == {"text_a": "一个女孩在给她的头发做发型。", "text_b": "一个女孩在梳头。", "label": 2.0}
  assert set(ds["label"]) <= {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}
