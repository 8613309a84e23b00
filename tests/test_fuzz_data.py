"""Fuzzed data files (hypothesis) through every reader of clowlab.data and the STS loader.

Contract per generated case: a (borderline-)valid file loads with the right content (row counts,
texts, labels); a bad one (empty, binary, wrongly encoded, broken .gz, malformed table) raises one
`ClowlabError` naming the file (and the line where there is one) and what to do -- never a
UnicodeDecodeError / csv.Error / JSONDecodeError / datasets or pyarrow error from deep inside.
Over-long lines are valid: they load and tokenization truncates them to seq_len. Empty text
(blank lines, blank fields) is skipped with a logged count by every reader (see the
clowlab.data.sources docstring). A failed load leaves no Arrow cache, and the corrected file then
loads. Through `train.train`, a bad `data.train` fails before the train step is compiled.

Every case is counted with `fuzzlog.record` (printed under "fuzzed cases" at the end of the run).
"""
import contextlib
import csv
import dataclasses
import gzip
import io
import json
import logging
import math
import pathlib
import re
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fuzzlog
from clowlab import train, train_state
from clowlab.data import multilingual, pipeline, sources
from clowlab.errors import ClowlabError
from clowlab.evaluators import sts

from tiny import tiny_cfg
from tiny import workdir_with_tokenizer as _workdir

# Generated cases use a fresh temporary directory each (function-scoped fixtures would be shared
# between the examples of one test), so the fixture health check does not apply.
def fuzz(max_examples: int):
  return settings(max_examples=max_examples,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# "What to do": every message carries an instruction after saying what is wrong.
_FIX = re.compile(r"\b(Pass|pass|Re-encode|Fix|Check|Use|Re-create|Convert|Point|Add|Store|Remove|"
                  r"remove|Drop|drop|Decompress)\b")


# ----------------------------------------------------------------------------------------------
# Readers: how to load a file, how to write valid content for it, how many rows it should give


def _csv_line(fields) -> str:
  buf = io.StringIO()
  csv.writer(buf, lineterminator="\n").writerow(fields)
  return buf.getvalue()


def _n(values) -> int:
  return len(set(values))


def _norm(t: str) -> str:
  return multilingual.normalize(t)


@dataclasses.dataclass(frozen=True)
class Reader:
  name: str
  suffix: str
  load: Callable[[str, str], Any]          # (path, cache_dir) -> result
  render: Callable[[list[str]], str]       # non-blank texts -> valid file content
  rows: Callable[[Any], int]               # result -> number of rows / sentences / pairs
  expect: Callable[[list[str]], int] = len  # texts -> expected rows
  line_of: Callable[[int], int] = lambda i: i + 1  # text i -> its line in the file
  table: bool = False                       # a CSV/TSV/JSONL/pipes reader


def _pairs_csv(ts):
  return "sentence1,sentence2,score\n" + "".join(
      _csv_line([t, t + " b", f"{i % 5}.5"]) for i, t in enumerate(ts))


def _mono_count(corpus):
  return sum(corpus.stats["mono"].values())


def _pair_count(corpus):
  return sum(corpus.stats["pairs"].values())


READERS = [
    Reader("load_text", ".txt", lambda p, c: sources.load_text(p, cache_dir=c),
           lambda ts: "".join(t + "\n" for t in ts), len),
    Reader("load_pairs csv", ".csv", lambda p, c: sources.load_pairs(p, cache_dir=c), _pairs_csv,
           len, line_of=lambda i: i + 2, table=True),
    Reader("load_pairs tsv", ".tsv",
           lambda p, c: sources.load_pairs(p, columns=("sentence1", "sentence2", "score"),
                                           cache_dir=c),
           lambda ts: "sentence1\tsentence2\tscore\n" + "".join(
               f"{t}\t{t} b\t{i % 5}\n" for i, t in enumerate(ts)),
           len, line_of=lambda i: i + 2, table=True),
    Reader("load_pairs jsonl", ".jsonl", lambda p, c: sources.load_pairs(p, cache_dir=c),
           lambda ts: "".join(json.dumps({"sentence1": t, "sentence2": t + " b", "score": i},
                                         ensure_ascii=False) + "\n" for i, t in enumerate(ts)),
           len, table=True),
    Reader("load_pairs pipes", ".txt",
           lambda p, c: sources.load_pairs(p, columns=(1, 2, 3), cache_dir=c),
           lambda ts: "".join(f"{i}||{t}||{t} b||{i % 5}\n" for i, t in enumerate(ts)),
           len, table=True),
    Reader("load_triples csv", ".csv", lambda p, c: sources.load_triples(p, cache_dir=c),
           lambda ts: "sent0,sent1,hard_neg\n" + "".join(_csv_line([t, t + " b", t + " c"])
                                                         for t in ts),
           len, line_of=lambda i: i + 2, table=True),
    Reader("load_parallel 2 files", ".txt", lambda p, c: sources.load_parallel(p, p, cache_dir=c),
           lambda ts: "".join(t + "\n" for t in ts), len),
    Reader("load_parallel jsonl", ".jsonl",
           lambda p, c: sources.load_parallel(p, columns=("en", "de"), cache_dir=c),
           lambda ts: "".join(json.dumps({"en": t, "de": t + " b"}) + "\n" for t in ts), len,
           table=True),
    Reader("load_parallel tsv", ".tsv",
           lambda p, c: sources.load_parallel(p, header=False, cache_dir=c),
           lambda ts: "".join(f"{t}\t{t} b\n" for t in ts), len, table=True),
    Reader("read_columns", ".csv", lambda p, c: sources.read_columns(p, (0, 1)),
           lambda ts: "".join(_csv_line([t, t + " b"]) for t in ts), lambda r: len(r[0]),
           table=True),
    Reader("sts.load", ".csv", lambda p, c: sts.load(p, cache_dir=c), _pairs_csv, len,
           line_of=lambda i: i + 2, table=True),
    Reader("multilingual mono", ".txt",
           lambda p, c: multilingual.prepare(mono=[f"en:{p}"], cache_dir=c),
           lambda ts: "".join(t + "\n" for t in ts), _mono_count,
           expect=lambda ts: _n(_norm(t) for t in ts)),
    Reader("multilingual mono#column", ".tsv",
           lambda p, c: multilingual.prepare(mono=[f"en:{p}#sentence"], cache_dir=c),
           lambda ts: "id\tsentence\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(ts)),
           _mono_count, expect=lambda ts: _n(_norm(t) for t in ts), line_of=lambda i: i + 2,
           table=True),
    Reader("multilingual conll #@chars", ".txt",
           lambda p, c: multilingual.prepare(mono=[f"zh:{p}#@chars"], cache_dir=c),
           lambda ts: "".join(f"{t.split()[0]}\tO\n\n" for t in ts), _mono_count,
           expect=lambda ts: _n(t.split()[0] for t in ts), line_of=lambda i: 2 * i + 1),
    Reader("multilingual bitext", ".txt",
           lambda p, c: multilingual.prepare(parallel=[f"en-de:{p}"], cache_dir=c),
           lambda ts: "".join(f"{t}\t{t} b\n" for t in ts), _pair_count,
           expect=lambda ts: _n(_norm(t) for t in ts), table=True),
    Reader("multilingual aligned", ".txt",
           lambda p, c: multilingual.prepare(parallel=[f"en-de:{p}|{p}"], cache_dir=c),
           lambda ts: "".join(t + "\n" for t in ts), _pair_count,
           expect=lambda ts: _n(_norm(t) for t in ts)),
]
TABLES = [r for r in READERS if r.table]
BY_NAME = {r.name: r for r in READERS}


# ----------------------------------------------------------------------------------------------
# Strategies

# Text that every reader stores unchanged as one field / line / sentence: no separators
# (tab, comma, pipe, quotes), no sentence ends (multilingual splits there), no control or
# line-separator characters, no BOM.
_TEXT_CHARS = st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp"),
                            exclude_characters="\t,|\"'.!?。！？#\\\ufeff")
texts = st.text(_TEXT_CHARS, min_size=1, max_size=24).filter(lambda t: t.strip())
readers = st.sampled_from(READERS)


@contextlib.contextmanager
def _case_dir():
  with tempfile.TemporaryDirectory(prefix="fuzz-") as d:
    yield pathlib.Path(d)


def _write(d: pathlib.Path, reader: Reader, data: bytes, gz: bool = False,
           name: str = "data") -> str:
  path = d / (name + reader.suffix + (".gz" if gz else ""))
  path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
  return str(path)


def _check_message(msg: str, path: str, line: int | None = None) -> None:
  assert path in msg, f"message does not name the file {path}: {msg}"
  if line is not None:
    assert re.search(rf"\bline {line}\b", msg), f"message does not name line {line}: {msg}"
  assert _FIX.search(msg), f"message does not say what to do: {msg}"


def _reject(klass: str, fn: Callable[[], Any], path: str, line: int | None = None) -> str:
  """Runs fn expecting exactly a ClowlabError (any other exception fails the test)."""
  with pytest.raises(ClowlabError) as info:
    fn()
  msg = str(info.value)
  _check_message(msg, path, line)
  fuzzlog.record(f"data: {klass}", "rejected")
  return msg


def _arrow_files(cache: str) -> list[str]:
  """Built or half-built caches under cache (Arrow files, `*.incomplete` build dirs, prepared
  multilingual corpora); lock files do not count."""
  root = pathlib.Path(cache)
  return [str(p) for p in root.rglob("*") if p.suffix in (".arrow", ".incomplete")
          or p.name == "corpus.json" or p.name.startswith(".") and p.is_dir()
          ] if root.exists() else []


def _first_bad_line(data: bytes) -> int | None:
  """The first line that is not UTF-8 or holds a NUL (what a reader must name), else None."""
  for i, raw in enumerate(data.split(b"\n"), 1):
    try:
      if "\x00" in raw.decode("utf-8"):
        return i
    except UnicodeDecodeError:
      return i
  return None


@contextlib.contextmanager
def _captured_logs():
  """Records of clowlab.data loggers at INFO and above."""
  records: list[logging.LogRecord] = []

  class _Handler(logging.Handler):
    def emit(self, record):
      records.append(record)

  log = logging.getLogger("clowlab.data")
  handler, level = _Handler(logging.INFO), log.level
  log.addHandler(handler)
  log.setLevel(logging.INFO)
  try:
    yield records
  finally:
    log.removeHandler(handler)
    log.setLevel(level)


# ----------------------------------------------------------------------------------------------
# Empty and whitespace-only files

_WHITESPACE = st.text(st.sampled_from(" \t\r\n\x0b\x0c\u3000\xa0"), max_size=40)


@fuzz(45)
@given(reader=readers, blank=_WHITESPACE, gz=st.booleans())
@example(reader=BY_NAME["load_pairs jsonl"], blank="", gz=False)
@example(reader=BY_NAME["sts.load"], blank="\n\n", gz=True)
def test_empty_or_blank_file_is_rejected(reader, blank, gz):
  with _case_dir() as d:
    path = _write(d, reader, blank.encode("utf-8"), gz)
    cache = str(d / "cache")
    _reject("empty / whitespace-only file", lambda: reader.load(path, cache), path)
    assert not _arrow_files(cache)


# ----------------------------------------------------------------------------------------------
# Binary files

_BAD_BYTES = st.sampled_from([b"\x00", b"\xff", b"\x80", b"\xc3(", b"\xed\xa0\x80", b"\xc0\xaf",
                              b"\x00\x00\x00", b"\xfe\xff"])
binary_blobs = st.one_of(
    st.tuples(st.binary(max_size=600), _BAD_BYTES, st.binary(max_size=600)).map(b"".join),
    st.binary(min_size=1, max_size=600).map(lambda b: b.replace(b"\n", b"\x00") + b"\x00"),
)


@fuzz(45)
@given(reader=readers, blob=binary_blobs, gz=st.booleans())
@example(reader=BY_NAME["load_pairs csv"], blob=b"sentence1,sentence2\na\x00b,c\n", gz=False)
@example(reader=BY_NAME["load_text"], blob=bytes(range(256)), gz=True)
def test_binary_file_is_rejected(reader, blob, gz):
  with _case_dir() as d:
    path = _write(d, reader, blob, gz)
    cache = str(d / "cache")
    _reject("binary file", lambda: reader.load(path, cache), path)
    assert not _arrow_files(cache)


@fuzz(30)
@given(reader=readers, garbage=st.binary(max_size=300),
       head=st.sampled_from([b"", b"\x1f\x8b", b"\x1f\x8b\x08", b"\x1f\x8b\x08\x00\x00\x00\x00"]),
       truncate=st.booleans())
@example(reader=BY_NAME["load_text"], garbage=b"hello\n", head=b"", truncate=False)
def test_broken_gzip_is_rejected(reader, garbage, head, truncate):
  """A `.gz` file that is not gzip (plain text, gzip magic + garbage, a truncated stream)."""
  with _case_dir() as d:
    path = d / (f"data{reader.suffix}.gz")
    if truncate:  # a real gzip stream cut short
      full = gzip.compress(reader.render(["some text"] * 50).encode() + garbage, mtime=0)
      data = full[:max(10, len(full) // 2)]
    else:
      data = head + garbage
    if not data:
      data = b"x"
    path.write_bytes(data)
    cache = str(d / "cache")
    msg = _reject("broken .gz file", lambda: reader.load(str(path), cache), str(path))
    assert "gzip" in msg or "UTF-8" in msg or "NUL" in msg, msg
    assert not _arrow_files(cache)


# ----------------------------------------------------------------------------------------------
# Wrong encodings

_CODECS = ["latin-1", "cp1252", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "gb18030"]
_NON_ASCII = st.sampled_from([*"éüßøñçåÆÖÿ€", "北京", "Straße", "naïve café", "😀"])
_WORDS = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "),
                 min_size=1, max_size=20).filter(lambda t: t.strip())


@fuzz(45)
@given(reader=readers, ts=st.lists(_WORDS, min_size=1, max_size=10), accent=_NON_ASCII,
       where=st.integers(0, 100), front=st.booleans(), codec=st.sampled_from(_CODECS),
       gz=st.booleans())
@example(reader=BY_NAME["load_text"], ts=["ok", "fine"], accent="é", where=1, front=False,
         codec="latin-1", gz=False)
@example(reader=BY_NAME["load_pairs csv"], ts=["ok", "fine"], accent="Ã©", where=0, front=False,
         codec="cp1252", gz=False)  # cp1252 bytes that are valid UTF-8: loads (as "é")
@example(reader=BY_NAME["multilingual mono"], ts=["ok"], accent="😀", where=0, front=True,
         codec="latin-1", gz=True)  # saved as "?ok": plain ASCII, loads
def test_wrongly_encoded_file(reader, ts, accent, where, front, codec, gz):
  """Valid content saved in another encoding: rejected naming the first undecodable line, unless
  the bytes happen to be valid UTF-8 (then it loads: mojibake cannot be detected)."""
  i = where % len(ts)
  ts = [(accent + t if front else t + accent) if k == i else t for k, t in enumerate(ts)]
  # A character the codec cannot encode becomes "?" (as editors do when saving).
  data = reader.render(ts).encode(codec, errors="replace")
  with _case_dir() as d:
    path = _write(d, reader, data, gz)
    cache = str(d / "cache")
    bad = _first_bad_line(data)
    if bad is None:
      seen = [t.encode(codec, errors="replace").decode("utf-8") for t in ts]
      assert reader.rows(reader.load(path, cache)) == reader.expect(seen)
      fuzzlog.record("data: wrong encoding (latin-1/cp1252/utf-16/utf-32/gb18030)", "loaded")
    else:
      _reject("wrong encoding (latin-1/cp1252/utf-16/utf-32/gb18030)",
              lambda: reader.load(path, cache), path, bad)
      assert not _arrow_files(cache)


@fuzz(30)
@given(reader=readers, n=st.integers(50, 2000), where=st.floats(0, 1), bad=_BAD_BYTES,
       gz=st.booleans())
def test_invalid_byte_in_long_file_then_corrected_file_loads(reader, n, where, bad, gz):
  """One bad byte deep inside a long valid file: rejected naming its exact line; no Arrow cache or
  prepared corpus is left behind; the corrected file then loads with every row."""
  ts = [f"sentence number {k} here" for k in range(n)]
  i = min(int(where * n), n - 1)
  marked = ts[:i] + [ts[i].replace("sentence", "sent@@ence")] + ts[i + 1:]
  data = reader.render(marked).encode("utf-8").replace(b"@@", bad)
  with _case_dir() as d:
    path = _write(d, reader, data, gz)
    cache = str(d / "cache")
    _reject("invalid UTF-8 / NUL byte deep in a long file", lambda: reader.load(path, cache),
            path, reader.line_of(i))
    assert not _arrow_files(cache), _arrow_files(cache)
    _write(d, reader, reader.render(ts).encode("utf-8"), gz)  # the user fixes the file
    got = reader.load(path, cache)
    assert reader.rows(got) == reader.expect(ts)
    fuzzlog.record("data: corrected file after a failed load", "loaded")


# ----------------------------------------------------------------------------------------------
# Malformed tables


def _is_label(s: str) -> bool:
  try:
    x = float(s)
  except ValueError:
    return False
  return math.isfinite(x) and abs(x) <= 3.4028234663852886e38


_BAD_LABELS = st.one_of(
    st.sampled_from(["entailment", "n/a", "", "nan", "inf", "-inf", "1e39", "4,5", "five", "--1"]),
    st.text(st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp"),
                          exclude_characters="\t,|\"\\\ufeff"), max_size=12)
    .filter(lambda s: not _is_label(s)))
_JSON_NOT_OBJECT = st.one_of(st.lists(st.integers(), max_size=3), st.integers(),
                             st.text(max_size=8), st.none(), st.booleans(),
                             st.floats(allow_nan=False))
_LABELLED = [r for r in TABLES if r.name in ("load_pairs csv", "load_pairs tsv", "load_pairs jsonl",
                                             "load_pairs pipes", "sts.load")]


def _sep(line: str) -> str:
  return "||" if "||" in line else "\t" if "\t" in line else ","


_JSONL_TABLES = [r for r in TABLES if r.suffix == ".jsonl"]
# Each kind of damage -> the readers it applies to.
_DAMAGE = {"ragged row": TABLES, "wrong header": [r for r in TABLES if r.line_of(0) == 2],
           "non-object JSON line": _JSONL_TABLES, "invalid JSON line": _JSONL_TABLES,
           "JSON array as text": _JSONL_TABLES, "unpaired surrogate escape": _JSONL_TABLES,
           "non-numeric label": _LABELLED,
           "no score column": [BY_NAME["sts.load"]]}


@st.composite
def malformed_tables(draw, kind: str):
  """(reader, file content, line the error must name or None, what was broken)."""
  reader = draw(st.sampled_from(_DAMAGE[kind]))
  ts = draw(st.lists(st.sampled_from(["a cat", "two dogs", "the sun", "x y z", "北京"]),
                     min_size=1, max_size=8))
  lines = reader.render(ts).splitlines(keepends=True)
  i = draw(st.integers(0, len(ts) - 1))
  n = reader.line_of(i) - 1  # 0-based index of text i's line
  jsonl = reader.suffix == ".jsonl"
  has_header = reader.line_of(0) == 2
  line = n + 1
  if kind == "ragged row":
    if jsonl:
      record = json.loads(lines[n])
      # Columns are guessed from the first record: without its label it is a valid unlabelled
      # file, without a text key the guess fails (naming the file, not a line).
      guessed = reader.name == "load_pairs jsonl" and i == 0
      key = "sentence1" if guessed else draw(st.sampled_from(sorted(record)))
      line = None if guessed else line
      del record[key]
      lines[n] = json.dumps(record) + "\n"
    else:
      sep = _sep(lines[n])
      fields = lines[n].rstrip("\n").split(sep)
      # Headerless tables have no width to compare with: only a missing field is detectable.
      if has_header and draw(st.booleans()):
        fields.append("extra")
      else:
        fields = fields[:draw(st.integers(1, len(fields) - 1))]
      lines[n] = sep.join(fields) + "\n"
  elif kind == "wrong header":
    names = draw(st.lists(st.sampled_from(["s1", "text", "Sentence1", "col", "sentence 1", "id"]),
                          min_size=1, max_size=4))
    sep = "\t" if reader.suffix == ".tsv" else ","
    lines[0] = sep.join(names) + "\n"
    line = None
  elif kind == "non-object JSON line":
    lines[n] = json.dumps(draw(_JSON_NOT_OBJECT)) + "\n"
  elif kind == "invalid JSON line":
    cut = draw(st.integers(1, len(lines[n]) - 3))
    lines[n] = lines[n][:cut] + draw(st.sampled_from(["", "}", ",", "\\", "{"])) + "\n"
    try:
      json.loads(lines[n])
      lines[n] = "{" + lines[n]
    except json.JSONDecodeError:
      pass
  elif kind == "unpaired surrogate escape":  # json.dumps writes it as "\\udXXX"
    record = json.loads(lines[n])
    record[next(iter(record))] += chr(draw(st.integers(0xD800, 0xDFFF)))
    lines[n] = json.dumps(record) + "\n"
  elif kind == "JSON array as text":
    record = json.loads(lines[n])
    record[next(iter(record))] = draw(st.lists(st.text(max_size=3), max_size=2))
    lines[n] = json.dumps(record) + "\n"
  elif kind == "non-numeric label":
    label = draw(_BAD_LABELS)
    if jsonl:
      record = json.loads(lines[n])
      record["score"] = draw(st.one_of(st.just(label), st.none(), st.lists(st.integers(),
                                                                           max_size=2)))
      lines[n] = json.dumps(record) + "\n"
    else:
      sep = _sep(lines[n])
      fields = lines[n].rstrip("\n").split(sep)
      fields[-1] = label
      lines[n] = sep.join(fields) + "\n"
  elif kind == "no score column":
    lines = ["sentence1,sentence2\n"] + [_csv_line([t, t + " b"]) for t in ts]
    line = None
  return reader, "".join(lines), line, kind


@pytest.mark.parametrize("damage", list(_DAMAGE))
@fuzz(12)
@given(data=st.data(), gz=st.booleans())
def test_malformed_table_is_rejected_naming_the_line(damage, data, gz):
  reader, content, line, kind = data.draw(malformed_tables(damage))
  with _case_dir() as d:
    path = _write(d, reader, content.encode("utf-8"), gz)
    cache = str(d / "cache")
    _reject(f"malformed table ({kind})", lambda: reader.load(path, cache), path, line)
    if kind != "no score column":  # that file is a valid pairs file: its cache is complete
      assert not _arrow_files(cache)


# ----------------------------------------------------------------------------------------------
# Borderline-valid tables: quoting, unicode, CRLF, BOM, blank lines and blank fields

_ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
                    max_size=20)


@st.composite
def valid_tables(draw):
  fmt = draw(st.sampled_from(["csv", "tsv", "jsonl", "pipes"]))
  field = _ANY_TEXT
  if fmt in ("tsv", "pipes"):  # no quoting: separators and line breaks cannot occur in a field
    field = _ANY_TEXT.map(lambda s: re.sub(r"[\t\r\n|]", " ", s))
  rows = draw(st.lists(st.tuples(field, field, st.floats(-1e6, 1e6, width=32)), min_size=1,
                       max_size=15))
  return fmt, rows, draw(st.booleans()), draw(st.booleans()), draw(st.booleans())


def _render_table(fmt, rows, crlf, bom, blank_lines) -> str:
  eol = "\r\n" if crlf else "\n"
  if fmt == "csv":
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=eol)
    w.writerow(["sentence1", "sentence2", "score"])
    out = [buf.getvalue()]
    for a, b, x in rows:
      buf = io.StringIO()
      csv.writer(buf, lineterminator=eol).writerow([a, b, repr(x)])
      out.append(buf.getvalue())
  elif fmt == "tsv":
    out = ["sentence1\tsentence2\tscore" + eol] + [f"{a}\t{b}\t{x!r}{eol}" for a, b, x in rows]
  elif fmt == "pipes":
    out = [f"{k}||{a}||{b}||{x!r}{eol}" for k, (a, b, x) in enumerate(rows)]
  else:
    out = [json.dumps({"sentence1": a, "sentence2": b, "score": x}, ensure_ascii=k % 2 == 0) + eol
           for k, (a, b, x) in enumerate(rows)]
  if blank_lines:
    out = [x for line in out for x in (line, eol)]
  return ("\ufeff" if bom else "") + "".join(out)


@fuzz(60)
@given(case=valid_tables())
@example(case=("csv", [("a, \"quoted\"\nline", "b", 1.5), ("", "skipped", 2.0)], True, True,
               True))
def test_valid_table_loads_exactly_and_skips_blank_text(case):
  fmt, rows, crlf, bom, blank_lines = case
  content = _render_table(fmt, rows, crlf, bom, blank_lines)
  suffix = {"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl", "pipes": ".txt"}[fmt]
  columns = (1, 2, 3) if fmt == "pipes" else ("sentence1", "sentence2", "score")
  kept = [(a, b, x) for a, b, x in rows if a.strip() and b.strip()]
  with _case_dir() as d:
    path = d / ("table" + suffix)
    path.write_text(content, encoding="utf-8", newline="")
    cache = str(d / "cache")
    load = lambda: sources.load_pairs(str(path), columns=columns, cache_dir=cache)  # noqa: E731
    with _captured_logs() as logs:
      if not kept:
        _reject("valid table, blank fields / quoting / unicode / CRLF / BOM", load, str(path))
        return
      ds = load()
    assert ds["text_a"] == [a for a, _, _ in kept]
    assert ds["text_b"] == [b for _, b, _ in kept]
    np.testing.assert_array_equal(np.asarray(ds["label"], np.float32),
                                  np.asarray([x for _, _, x in kept], np.float32))
    skipped = [r for r in logs if "empty text field" in r.getMessage()]
    if len(kept) < len(rows):
      assert len(skipped) == 1 and f"skipped {len(rows) - len(kept)} rows" in \
          skipped[0].getMessage() and str(path) in skipped[0].getMessage()
    else:
      assert not skipped
    fuzzlog.record("data: valid table, blank fields / quoting / unicode / CRLF / BOM", "loaded")


# ----------------------------------------------------------------------------------------------
# Empty sentences in line-based sources and multilingual sources


@fuzz(40)
@given(reader=st.sampled_from([BY_NAME[n] for n in (
    "load_text", "load_parallel 2 files", "multilingual mono", "multilingual aligned",
    "multilingual bitext", "load_parallel tsv", "load_pairs tsv")]),
       items=st.lists(st.one_of(texts, st.sampled_from(["", " ", "\t", "  \u3000"])), min_size=1,
                      max_size=15))
def test_empty_sentences_are_skipped_with_a_logged_count(reader, items):
  """Blank lines / fields: skipped (count logged), the rest loads; nothing left -> rejected."""
  if reader.name in ("load_parallel tsv", "load_pairs tsv", "multilingual bitext"):
    items = [t.replace("\t", " ") for t in items]  # a blank field, not an extra one
    header = "sentence1\tsentence2\tscore\n" if reader.name == "load_pairs tsv" else ""
    content = header + "".join(f"{t}\t{t}\t1\n" if reader.name == "load_pairs tsv" else
                               f"{t}\t{t}\n" for t in items)
  else:
    content = "".join(t + "\n" for t in items)
  kept = [t for t in items if t.strip()]
  with _case_dir() as d:
    path = _write(d, reader, content.encode("utf-8"))
    cache = str(d / "cache")
    with _captured_logs() as logs:
      if not kept:
        _reject("empty sentences (blank lines / blank fields)", lambda: reader.load(path, cache),
                path)
        return
      got = reader.load(path, cache)
    assert reader.rows(got) == reader.expect(kept)
    blank = len(items) - len(kept)
    messages = [r.getMessage() for r in logs if "skipped" in r.getMessage()]
    if blank:
      assert len(messages) == 1 and f"skipped {blank} " in messages[0], messages
    else:
      assert not messages
    fuzzlog.record("data: empty sentences (blank lines / blank fields)", "loaded")


# ----------------------------------------------------------------------------------------------
# Over-long lines (valid: loaded whole, truncated to seq_len by tokenization)

_LONG_READERS = [BY_NAME[n] for n in ("load_text", "load_pairs csv", "load_pairs tsv",
                                       "load_pairs jsonl", "read_columns", "multilingual mono",
                                       "load_parallel 2 files")]


def _long_line(megabytes: float, seed: int) -> str:
  rng = np.random.default_rng(seed)
  words = np.array(["lorem", "ipsum", "dolor", "sit", "amet", "北京", "straße", "x"])
  n = int(megabytes * 2**20 / 6)
  return " ".join(words[rng.integers(0, len(words), n)])


@fuzz(6)
@given(reader=st.sampled_from(_LONG_READERS), megabytes=st.sampled_from([1, 2, 5]),
       seed=st.integers(0, 2**16), short=st.integers(0, 3))
def test_over_long_line_loads_whole(reader, megabytes, seed, short):
  long = _long_line(megabytes, seed)
  ts = [f"short line {k}" for k in range(short)] + [long]
  with _case_dir() as d:
    path = _write(d, reader, reader.render(ts).encode("utf-8"))
    got = reader.load(path, str(d / "cache"))
    assert reader.rows(got) == reader.expect(ts)
    if reader.name == "load_text":
      assert len(got[-1]["text"]) == len(long)
    elif reader.name.startswith("load_pairs"):
      assert got[-1]["text_a"] == long
    fuzzlog.record("data: over-long line (1-5 MB)", "loaded")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
  """The tiny sentencepiece tokenizer of tests/tiny.py, trained once for this module."""
  d = tmp_path_factory.mktemp("tok")
  train.resolve_tokenizer(tiny_cfg(), str(d))
  return d / "tokenizer"


@fuzz(2)
@given(tokens=st.integers(50_000, 250_000), seed=st.integers(0, 2**16))
@example(tokens=200_000, seed=0)
def test_over_long_line_is_truncated_to_seq_len(tokenizer_dir, tokens, seed):
  from clowlab.data import tokenizers  # noqa: PLC0415
  tok = tokenizers.load_tokenizer(str(tokenizer_dir))
  rng = np.random.default_rng(seed)
  words = np.array(["the", "cat", "sat", "on", "a", "mat", "and", "ran"])
  long = " ".join(words[rng.integers(0, len(words), tokens)])
  with _case_dir() as d:
    path = d / "long.txt"
    path.write_text(f"a short line\n{long}\nanother short one\n", encoding="utf-8")
    ds = sources.load_text(str(path), cache_dir=str(d / "cache"))
    tok_ds = pipeline.tokenize(ds, tok, seq_len=32, cache_dir=str(d / "cache"))
    lengths = [len(x) for x in tok_ds["input_ids"]]
    assert lengths[1] == 32 and max(lengths) == 32 and lengths[0] < 32, lengths
    fuzzlog.record("data: over-long line (200k tokens) -> tokenize", "loaded")


# ----------------------------------------------------------------------------------------------
# End to end: train() on a config whose data.train is a bad file


# train() reads the data before it compiles anything; the readers above see every class of bad
# file, these check that the user's path reaches them first.
_TRAIN_CASES = {
    "empty": ("e.txt", b""),
    "binary": ("b.txt", bytes(range(256)) * 4),
    "latin-1": ("l.txt", "ünïcödé text\nsecond line\n".encode("latin-1")),
    "fewer rows than a batch": ("few.txt", b"line one\nline two\nline three\n"),
}


@pytest.fixture
def no_compile(monkeypatch):
  """Fails the test if train() gets as far as its first compile (the sharded initialisation)."""
  def boom(*a, **k):
    raise AssertionError("train() compiled init_state before rejecting the data")
  monkeypatch.setattr(train_state, "init_state", boom)


@pytest.mark.parametrize("case", list(_TRAIN_CASES))
def test_train_rejects_bad_data_before_any_compile(case, tmp_path, tokenizer_dir, no_compile):
  name, data = _TRAIN_CASES[case]
  path = tmp_path / name
  path.write_bytes(data)
  cfg = tiny_cfg(**{"data.train": [str(path)]})
  _reject("train() with a bad data.train file",
          lambda: train.train(cfg, _workdir(tmp_path, "w", tokenizer_dir)), str(path))
