"""Training / evaluation inputs as `datasets.Dataset`s with normalised columns.

    load_text(paths)                       -> columns: text
    load_pairs(path, columns=...)          -> columns: text_a, text_b[, label]
    load_parallel(src_path, tgt_path)      -> columns: src, tgt
    load_parallel(path, columns=(..., ...))
    read_columns(path, columns=(...))      -> (rows of raw strings, line numbers); no cache

Tables are CSV, TSV, JSONL or "pipes" (fields separated by `||`, no quoting: the CNSD Chinese
STS-B files `id||sentence1||sentence2||score`).

Files are parsed here (UTF-8, `.gz` transparently) and written once as an Arrow file under
`cache_dir` by `Dataset.from_generator`; later calls with the same files (same path, size and
mtime) and options memory-map that cache instead of re-parsing. Nothing is ever written next to
the source files, so read-only data directories work.

Every problem a user can fix (missing file, unknown column, empty file, bad encoding, NUL
bytes (binary or UTF-16 files), broken `.gz`, ragged row, non-numeric or out-of-range label,
malformed JSON) raises `ClowlabError` naming the file (and line) before or while the Arrow cache is
built; a failed build leaves no cache behind. Long lines are valid (no CSV field-size limit):
tokenization truncates them to seq_len.

Empty text. Blank lines and rows with an empty (whitespace-only) text field are skipped, never
stored: `load_text` skips blank lines (paragraph separators; their count is logged at INFO),
`load_pairs` / `load_triples` / `load_parallel` skip rows or line pairs with an empty text field
and log one WARNING with the count and the first such line. A source with nothing left raises
`ClowlabError`. `read_columns` returns raw fields ("" included); its callers decide.
"""
from __future__ import annotations

import csv
import gzip
import itertools
import json
import logging
import math
import os
import re
import sys
import zlib
from collections.abc import Iterator, Mapping, Sequence

import datasets
from datasets.fingerprint import Hasher

from clowlab.errors import ClowlabError

logger = logging.getLogger(__name__)

# Bump when the parsing below changes, so stale Arrow caches are not reused.
_PARSER_VERSION = 2
FORMATS = ("csv", "tsv", "jsonl", "pipes")
_PIPE = "||"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
SOURCES_KEY = "clowlab_sources"  # in a built dataset's info.description (JSON)
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
# Column names tried (in order) when `load_pairs(columns=None)`.
_PAIR_GUESSES = (("sentence1", "sentence2"), ("text_a", "text_b"), ("sentence_a", "sentence_b"),
                 ("query", "passage"), ("anchor", "positive"))
_LABEL_GUESSES = ("score", "label", "similarity_score", "similarity")
_LABEL_DTYPES = ("float32", "float64", "int32", "int64")
# Largest |label| each label dtype stores exactly enough to be a label (beyond: an error).
_LABEL_LIMITS = {"float32": 3.4028234663852886e38, "float64": sys.float_info.max,
                 "int32": 2**31 - 1, "int64": 2**63 - 1}
# Lines may be megabytes long (they are truncated at tokenization), so no CSV field limit.
_CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)

Paths = str | os.PathLike | Sequence[str | os.PathLike]
Column = str | int


def default_cache_dir() -> str:
  """$CLOWLAB_CACHE/datasets, else ~/.cache/clowlab/datasets."""
  from clowlab import paths  # noqa: PLC0415 - etils only when a default is needed
  return os.path.join(paths.cache_root(), "datasets")


# ----------------------------------------------------------------------------------------------
# Public loaders


def load_text(paths: Paths, *, cache_dir: str | None = None) -> datasets.Dataset:
  """One text per non-blank line of one or many files (`.gz` ok); column `text`.

  Lines are stripped of surrounding whitespace; blank lines are skipped (count logged at INFO).
  """
  files = _check_files(paths)
  features = datasets.Features({"text": datasets.Value("string")})
  return _build(_text_rows, features, cache_dir, files=files)


def load_pairs(path: Paths, *, columns: Sequence[Column] | None = None,
               format: str | None = None, header: bool | None = None,
               names: Sequence[str] | None = None, label_map: Mapping[str, float] | None = None,
               label_dtype: str = "float32",
               cache_dir: str | None = None) -> datasets.Dataset:
  """Sentence pairs with an optional score/label; columns `text_a`, `text_b`[, `label`].

  path: CSV (excel dialect), TSV (no quote processing: GLUE TSVs contain bare quotes), JSONL or
    pipes (`a||b||score`, no quoting); one file or a list of files of the same format. The format
    comes from the extension (`.gz` stripped) unless `format` is given; files with another
    extension (`.txt`) whose first non-blank line contains `||` are read as pipes.
  columns: (first, second[, label]) as header names or 0-based field indices. None guesses
    common header names (sentence1/sentence2/score, text_a/text_b/label, ...).
  header: whether the first row is a header. Default True unless `columns` are all integers or
    `names` is given. For headerless files use integer `columns`, or pass `names` (one per field)
    and refer to fields by name.
  label_map: maps non-numeric labels (e.g. RTE's "entailment") to numbers.
  label_dtype: storage dtype of `label` (float32 for scores, int64 for class ids, ...); labels
    must be finite numbers that fit it.
  Rows with an empty text field are skipped (count and first line logged as a warning).
  """
  files = _check_files(path)
  fmt = _file_format(files, format)
  header = _default_header(header, columns, names, fmt)
  if label_dtype not in _LABEL_DTYPES:
    raise ClowlabError(f"load_pairs: label_dtype={label_dtype!r} is not supported. "
                       f"Use one of {list(_LABEL_DTYPES)}.")
  if columns is None:
    columns = _guess_pair_columns(files[0], fmt, header, names)
  if len(columns) not in (2, 3):
    raise ClowlabError(f"load_pairs: columns={tuple(columns)!r} must list 2 or 3 columns "
                       "(first text, second text[, label]).")
  out_names = ["text_a", "text_b", "label"][:len(columns)]
  spec = {"text_a": datasets.Value("string"), "text_b": datasets.Value("string")}
  if len(columns) == 3:
    spec["label"] = datasets.Value(label_dtype)
  return _build_table(files, fmt, header, names, columns, out_names, datasets.Features(spec),
                      cache_dir, label_map=dict(label_map) if label_map else None,
                      label_dtype=label_dtype)


def load_scored_pairs(path: str, columns: Sequence[Column] | None = None, *,
                      cache_dir: str | None = None, header: bool | None = None):
  """A scored pairs file (STS: sentence pairs with a gold similarity) as a pairs dataset
  (text_a, text_b, label); see load_pairs.

  columns: (first, second, score) as header names or 0-based indices; None guesses from the
  header (sentence1/sentence2/score, ...).
  """
  ds = load_pairs(path, columns=columns, header=header, cache_dir=cache_dir)
  if "label" not in ds.column_names:
    raise ClowlabError(f"clowlab: {path} has no score column; pass columns=(first, second, "
                       "score), e.g. --columns=sentence1,sentence2,score.")
  return ds


def scored_pair_sets(specs, cache_dir: str | None, key: str = "eval.sts") -> dict:
  """{name: scored pairs dataset} of a list of {path, columns, name} (config.eval.sts or an
  sts evaluator's `sets`); `key` names the config entry in errors."""
  out = {}
  for i, spec in enumerate(specs or []):
    spec = dict(spec)
    if "path" not in spec:
      raise ClowlabError(f"clowlab: {key}[{i}] needs a path (and columns, name).")
    name = spec.get("name") or os.path.splitext(os.path.basename(spec["path"]))[0]
    cols = spec.get("columns")
    out[name] = load_scored_pairs(spec["path"], tuple(cols) if cols else None,
                                  cache_dir=cache_dir)
  return out


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def split_sentences(batch: dict) -> dict:
  """A batched `datasets.map` function: each text's sentences (split after . ! ? and their
  CJK forms followed by white space) as rows of their own; blank pieces dropped."""
  out = []
  for t in batch["text"]:
    out.extend(x for x in _SENTENCE_END.split(t) if x.strip())
  return {"text": out}


def load_triples(path: Paths, *, columns: Sequence[Column] | None = None,
                 format: str | None = None, header: bool | None = None,
                 names: Sequence[str] | None = None,
                 cache_dir: str | None = None) -> datasets.Dataset:
  """(anchor, positive, hard negative) rows for supervised contrastive training (SimCSE's
  `nli_for_simcse.csv`: sent0, sent1, hard_neg); columns `text_a`, `text_b`, `text_c`.

  columns: the three columns as header names or 0-based indices; None tries
  sent0/sent1/hard_neg, then anchor/positive/negative. Other options as in `load_pairs`.
  Rows with an empty text field are skipped (count and first line logged as a warning).
  """
  files = _check_files(path)
  fmt = _file_format(files, format)
  header = _default_header(header, columns, names, fmt)
  if columns is None:
    if fmt == "jsonl":
      first = next(iter(_read_records(files[0], fmt, header)), (0, None))[1]
      if first is None:
        raise ClowlabError(f"{files[0]} is empty (no JSON object). Check the path, or remove it "
                           "from the inputs.")
      found = list(first)
    else:
      found = list(names) if names else _header_keys(files[0], fmt) if header else []
      if found is None:
        raise ClowlabError(f"{files[0]} is empty. Check the path, or remove it from the inputs.")
    for guess in (("sent0", "sent1", "hard_neg"), ("anchor", "positive", "negative"),
                  ("text_a", "text_b", "text_c")):
      if all(g in found for g in guess):
        columns = guess
        break
    else:
      raise ClowlabError(f"load_triples: cannot guess the columns of {files[0]} (header "
                         f"{found}); pass columns=(anchor, positive, hard_negative).")
  if len(columns) != 3:
    raise ClowlabError(f"load_triples: columns={tuple(columns)!r} must list 3 columns "
                       "(anchor, positive, hard negative).")
  spec = {c: datasets.Value("string") for c in ("text_a", "text_b", "text_c")}
  return _build_table(files, fmt, header, names, columns, ["text_a", "text_b", "text_c"],
                      datasets.Features(spec), cache_dir, label_map=None, label_dtype=None)


def load_parallel(src_path: Paths, tgt_path: Paths | None = None, *,
                  columns: Sequence[Column] | None = None, format: str | None = None,
                  header: bool | None = None, names: Sequence[str] | None = None,
                  cache_dir: str | None = None) -> datasets.Dataset:
  """Aligned translation pairs; columns `src`, `tgt`.

  Either two line-aligned plain-text files (`load_parallel("train.en.gz", "train.de.gz")`; line
  counts must match) or one CSV/TSV/JSONL file with two columns
  (`load_parallel("en_zh.tsv", columns=("en", "zh"))`; integer `columns` with header=False for
  headerless files; CSV/TSV default to the first two fields). Options as in `load_pairs`.
  Pairs with a blank side are skipped (count and first line logged as a warning).
  """
  features = datasets.Features({"src": datasets.Value("string"), "tgt": datasets.Value("string")})
  if tgt_path is not None:
    if columns is not None:
      raise ClowlabError("load_parallel: `columns` only applies to one tabular file, but two "
                         "files were given. Drop `columns`, or pass one file with two columns.")
    src, tgt = _check_files(src_path), _check_files(tgt_path)
    return _build(_aligned_rows, features, cache_dir, src_files=src, tgt_files=tgt)
  files = _check_files(src_path)
  fmt = _file_format(files, format)
  header_columns = columns  # the default (0, 1) below does not imply a headerless file
  if columns is None:
    if fmt == "jsonl":
      raise ClowlabError(f"load_parallel: {files[0]} is JSONL, so the source and target keys must "
                         "be named. Pass columns=('src_key', 'tgt_key').")
    columns = (0, 1)
  if len(columns) != 2:
    raise ClowlabError(f"load_parallel: columns={tuple(columns)!r} must name exactly two columns "
                       "(source, target). Pass e.g. columns=('en', 'de').")
  header = _default_header(header, header_columns, names, fmt)
  return _build_table(files, fmt, header, names, columns, ["src", "tgt"], features, cache_dir,
                      label_map=None, label_dtype=None)


def read_columns(path: str | os.PathLike, columns: Sequence[Column], *, format: str | None = None,
                 header: bool | None = None, names: Sequence[str] | None = None
                 ) -> tuple[list[tuple[str, ...]], list[int]]:
  """The chosen fields of every data row of one file as strings (None -> ""), and the row's
  line number; parsed as `load_pairs` parses (same formats, header rules and errors) but held in
  memory with no Arrow cache: for small labelled sets whose labels may be text (GLUE's RTE).
  Empty fields are returned as "" (rows are not skipped): the caller decides what they mean.
  """
  files = _check_files(path)
  fmt = _file_format(files, format)
  header = _default_header(header, columns, names, fmt)
  if not columns:
    raise ClowlabError(f"read_columns: no columns given for {files[0]}. Pass columns=(...) as "
                       "header names or 0-based indices.")
  keys = _column_keys(files[0], fmt, header, names, list(columns))
  rows, lines = [], []
  for line_no, record in _read_records(files[0], fmt, header):
    rows.append(tuple(_text(_field(record, k, files[0], line_no), files[0], line_no, c)
                      for k, c in zip(keys, columns)))
    lines.append(line_no)
  if not rows:
    raise ClowlabError(f"{files[0]} contains no data rows. "
                       "Check the path, and `header=` if the only row is being read as a header.")
  return rows, lines


def _build_table(files, fmt, header, names, columns, out_names, features, cache_dir,
                 **kwargs) -> datasets.Dataset:
  for path in files:  # fail on a bad column before any Arrow is written
    _column_keys(path, fmt, header, names, columns)
  return _build(_table_rows, features, cache_dir, files=files, fmt=fmt, header=header,
                names=list(names) if names else None, columns=list(columns),
                out_names=out_names, **kwargs)


# ----------------------------------------------------------------------------------------------
# Building the Arrow cache


def _build(generator, features: datasets.Features, cache_dir: str | None,
           **gen_kwargs) -> datasets.Dataset:
  """Runs `generator(**gen_kwargs)` into an Arrow file under cache_dir (reused when unchanged)."""
  cache_dir = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
  fingerprint = Hasher.hash((_PARSER_VERSION, generator.__name__, _file_signatures(gen_kwargs),
                             sorted((k, v) for k, v in gen_kwargs.items()), features.to_dict()))
  # Tuples, not lists: `datasets` would shard list arguments into one generator call per item.
  gen_kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in gen_kwargs.items()}
  try:
    ds = datasets.Dataset.from_generator(generator, features=features, cache_dir=cache_dir,
                                         gen_kwargs=gen_kwargs, fingerprint=fingerprint)
  except datasets.exceptions.DatasetGenerationError as e:
    cause = e.__cause__ or e.__context__
    if isinstance(cause, ClowlabError):
      raise ClowlabError(str(cause)) from None
    raise
  # Which files the rows came from, so later errors (too few rows for a batch) can name them.
  files = [p for key in ("files", "src_files", "tgt_files") for p in gen_kwargs.get(key, ())]
  ds.info.description = json.dumps({SOURCES_KEY: _names(files)})
  return ds


def source_names(ds: datasets.Dataset) -> str | None:
  """The file(s) a dataset built here was read from ("a.txt (+2 more files)"), or None."""
  try:
    return json.loads(ds.info.description or "{}").get(SOURCES_KEY)
  except (json.JSONDecodeError, AttributeError):
    return None


def _file_signatures(gen_kwargs: dict) -> list:
  """(path, size, mtime) of every input file, so edited files invalidate the cache."""
  sigs = []
  for key in ("files", "src_files", "tgt_files"):
    for path in gen_kwargs.get(key, ()):
      st = os.stat(path)
      sigs.append((path, st.st_size, st.st_mtime_ns))
  return sigs


# ----------------------------------------------------------------------------------------------
# Row generators (module-level so `datasets` can hash them; they run inside from_generator)


def _text_rows(files: list[str]) -> Iterator[dict]:
  count = blank = 0
  for path in files:
    for _, line in _read_lines(path):
      line = line.strip()
      if line:
        count += 1
        yield {"text": line}
      else:
        blank += 1
  if blank:
    logger.info("clowlab: skipped %d blank lines of %s.", blank, _names(files))
  if not count:
    raise ClowlabError(f"{_names(files)} contains no non-blank lines. "
                       "Point the text source at files with one text per line.")


def _aligned_rows(src_files: list[str], tgt_files: list[str]) -> Iterator[dict]:
  src_lines = itertools.chain.from_iterable(_read_lines(p) for p in src_files)
  tgt_lines = itertools.chain.from_iterable(_read_lines(p) for p in tgt_files)
  n_src = n_tgt = count = 0
  skipped = _Skipped()
  for s, t in itertools.zip_longest(src_lines, tgt_lines):
    n_src += s is not None
    n_tgt += t is not None
    if s is None or t is None:
      continue  # keep counting the longer side for the error below
    line_no, s, t = s[0], s[1].strip(), t[1].strip()
    if s and t:
      count += 1
      yield {"src": s, "tgt": t}
    else:
      skipped.add(n_src if len(src_files) > 1 else line_no)
  if n_src != n_tgt:
    raise ClowlabError(f"Parallel files are not aligned: {_names(src_files)} has {n_src} lines but "
                       f"{_names(tgt_files)} has {n_tgt}. Pass line-aligned files "
                       "(line i of one is the translation of line i of the other).")
  skipped.log(f"{_names(src_files)} / {_names(tgt_files)}", "line pairs with a blank side")
  if not count:
    raise ClowlabError(f"Parallel files {_names(src_files)} / {_names(tgt_files)} contain no "
                       "non-blank line pairs. Check the paths.")


def _table_rows(files: list[str], fmt: str, header: bool, names: list[str] | None,
                columns: list[Column], out_names: list[str], label_map: dict | None,
                label_dtype: str | None) -> Iterator[dict]:
  count = 0
  for path in files:
    keys = _column_keys(path, fmt, header, names, columns)
    skipped = _Skipped()
    for line_no, record in _read_records(path, fmt, header):
      row = {}
      for out, col, key in zip(out_names, columns, keys):
        value = _field(record, key, path, line_no)
        if out == "label":
          row[out] = _parse_label(value, label_map, label_dtype, path, line_no, col)
        else:
          row[out] = _text(value, path, line_no, col)
      if any(not row[out].strip() for out in out_names if out != "label"):
        skipped.add(line_no)
        continue
      count += 1
      yield row
    skipped.log(path, "rows with an empty text field")
  if not count:
    raise ClowlabError(f"{_names(files)} contains no data rows with text. Check the path, the "
                       "columns, and `header=` if the only row is being read as a header.")


class _Skipped:
  """Counts skipped rows (and the first one's line) and logs them once as a warning."""

  def __init__(self):
    self.count, self.first = 0, None

  def add(self, line_no: int) -> None:
    self.count += 1
    self.first = line_no if self.first is None else self.first

  def log(self, where: str, what: str) -> None:
    if self.count:
      logger.warning("clowlab: skipped %d %s in %s (first at line %d).", self.count, what, where,
                     self.first)


# ----------------------------------------------------------------------------------------------
# Reading


def _read_lines(path: str) -> Iterator[tuple[int, str]]:
  """(1-based line number, decoded line) with exact line numbers for decode errors.

  Lines holding a NUL character are rejected: UTF-8 text has none, while binary files and UTF-16
  text (which otherwise decodes as "valid" UTF-8 when it is ASCII) are full of them.
  """
  gz = path.endswith(".gz")
  try:
    f = gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115
  except OSError as e:
    raise ClowlabError(f"{path} cannot be read ({e.strerror or e}). Check the path and its "
                       "permissions.") from None
  with f:
    line_no = 0
    while True:
      try:
        raw = f.readline()
      except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        where = f", after line {line_no}" if line_no else ""
        raise ClowlabError(f"{path} is not a valid gzip file ({e}{where}). Re-create it with "
                           "gzip, or drop the .gz extension if it is plain text.") from None
      except OSError as e:
        raise ClowlabError(f"{path} cannot be read after line {line_no} "
                           f"({e.strerror or e}). Check the file.") from None
      if not raw:
        return
      line_no += 1
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise ClowlabError(f"{path} line {line_no} is not valid UTF-8 ({e.reason} at byte "
                           f"{e.start}). Re-encode the file as UTF-8.") from None
      if "\x00" in line:
        raise ClowlabError(f"{path} line {line_no} contains a NUL byte, so it is binary or "
                           "UTF-16 rather than UTF-8 text. Re-encode the file as UTF-8 (or "
                           "remove it from the inputs).")
      if line_no == 1:
        line = line.removeprefix("\ufeff")
      yield line_no, line


def _read_records(path: str, fmt: str, header: bool) -> Iterator[tuple[int, dict | list]]:
  """(line number, record) per data row: a dict for JSONL, else the list of fields."""
  if fmt == "jsonl":
    for line_no, line in _read_lines(path):
      if line.strip():
        yield line_no, _json_object(line, path, line_no)
    return
  reader = _csv_reader((line for _, line in _read_lines(path)), fmt)
  width = None
  try:
    for fields in reader:
      if not fields or fields == [""]:
        continue  # blank line
      if header and width is None:
        width = len(fields)
        continue
      if width is not None and len(fields) != width:
        raise ClowlabError(f"{path} line {reader.line_num} has {len(fields)} fields but the header "
                           f"has {width}. Fix the row, or check format= (read as {fmt}).")
      yield reader.line_num, fields
  except csv.Error as e:
    raise _csv_error(e, path, reader.line_num, fmt) from None


def _csv_error(e: csv.Error, path: str, line_no: int, fmt: str) -> ClowlabError:
  if "new-line character" in str(e):
    return ClowlabError(f"{path} line {line_no} is not valid {fmt.upper()}: it holds a bare "
                        "carriage return (\\r) outside quotes. Convert the file to \\n or "
                        "\\r\\n line endings, or quote that field.")
  return ClowlabError(f"{path} line {line_no} is not valid {fmt.upper()}: {e}. Fix the row, or "
                      "pass the right format=.")


class _PipesReader:
  """Like csv.reader for "||"-separated lines (no quoting), with the same `line_num`."""

  def __init__(self, lines):
    self._lines = iter(lines)
    self.line_num = 0

  def __iter__(self):
    return self

  def __next__(self) -> list[str]:
    line = next(self._lines).rstrip("\r\n")
    self.line_num += 1
    return line.split(_PIPE) if line else []


def _csv_reader(lines, fmt: str):
  if csv.field_size_limit() < _CSV_FIELD_LIMIT:  # process-wide; the default is 128 KiB
    csv.field_size_limit(_CSV_FIELD_LIMIT)
  if fmt == "pipes":
    return _PipesReader(lines)
  if fmt == "csv":
    return csv.reader(lines, dialect="excel")
  return csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)


def _json_object(line: str, path: str, line_no: int) -> dict:
  try:
    record = json.loads(line)
  except json.JSONDecodeError as e:
    raise ClowlabError(f"{path} line {line_no} is not valid JSON ({e.msg}). Fix the line: JSONL "
                       "files need one JSON object per line.") from None
  except (ValueError, RecursionError) as e:  # huge integers, absurdly deep nesting
    reason = "nested too deeply" if isinstance(e, RecursionError) else str(e).split(";")[0]
    raise ClowlabError(f"{path} line {line_no} is not usable JSON ({reason}). Fix the line: "
                       "JSONL files need one flat JSON object per line.") from None
  if not isinstance(record, dict):
    raise ClowlabError(f"{path} line {line_no} is a JSON {type(record).__name__}, not an object. "
                       "Fix the line: JSONL files need one JSON object per line.")
  if _SURROGATE_ESCAPE.search(line):  # "\\ud800" alone decodes to a string Arrow cannot store
    try:
      json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
      raise ClowlabError(f"{path} line {line_no} holds an unpaired surrogate escape (like "
                         "\\ud800), which is not text. Fix the escape, or drop the line.") from None
  return record


def _field(record: dict | list, key: str | int, path: str, line_no: int):
  if isinstance(record, dict):
    if key not in record:
      raise ClowlabError(f"{path} line {line_no} has no key {key!r}; it has {sorted(record)}. "
                         "Fix the row or pass columns= naming keys every row has.")
    return record[key]
  if key >= len(record):
    raise ClowlabError(f"{path} line {line_no} has {len(record)} fields, so column index {key} "
                       "does not exist. Fix the row or pass smaller column indices.")
  return record[key]


def _text(value, path: str, line_no: int, col: Column) -> str:
  """A text field as a string: None -> "", numbers -> their str; JSON arrays / objects are
  errors."""
  if isinstance(value, str):
    return value
  if value is None:
    return ""
  if isinstance(value, (dict, list)):
    raise ClowlabError(f"{path} line {line_no}: column {col!r} holds a JSON "
                       f"{'object' if isinstance(value, dict) else 'array'}, not text. Store the "
                       "text as a JSON string, or pass columns= naming the text keys.")
  return str(value)


def _parse_label(value, label_map: dict | None, dtype: str, path: str, line_no: int, col: Column):
  if label_map is not None and str(value) in label_map:
    value = label_map[str(value)]
  try:
    number = float(value)
  except (TypeError, ValueError):
    hint = (f"Add it to label_map (has {sorted(label_map)})" if label_map else
            "Pass label_map={'text label': number, ...}")
    raise ClowlabError(f"{path} line {line_no}: label {value!r} in column {col!r} is not a "
                       f"number. {hint}.") from None
  if not math.isfinite(number) or abs(number) > _LABEL_LIMITS[dtype]:
    raise ClowlabError(f"{path} line {line_no}: label {value!r} in column {col!r} is not a finite "
                       f"number that fits label_dtype={dtype!r}. Fix the label (or pick a wider "
                       "label_dtype).")
  if dtype.startswith("int"):
    if number != int(number):
      raise ClowlabError(f"{path} line {line_no}: label {value!r} is not an integer but "
                         f"label_dtype={dtype!r}. Use label_dtype='float32' for scores.")
    return int(number)
  return number


# ----------------------------------------------------------------------------------------------
# Validation before building


def _check_files(paths: Paths) -> list[str]:
  if isinstance(paths, (str, os.PathLike)):
    paths = [paths]
  files = [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in paths]
  if not files:
    raise ClowlabError("No input files were given. Pass a path or a list of paths.")
  for given, path in zip(paths, files):
    if not os.path.exists(path):
      raise ClowlabError(f"Input file not found: {given} (resolved to {path}). "
                         "Check the path; relative paths are resolved from the current directory.")
    if not os.path.isfile(path):
      raise ClowlabError(f"Input path {given} is not a file. Pass the data file(s), not a folder.")
  return files


def _file_format(files: list[str], fmt: str | None) -> str:
  if fmt is not None:
    if fmt not in FORMATS:
      raise ClowlabError(f"format={fmt!r} is not supported. Use one of {list(FORMATS)}.")
    return fmt
  found = {_EXTENSIONS.get(os.path.splitext(p.removesuffix(".gz"))[1].lower()) or _sniff(p)
           for p in files}
  if len(found) != 1 or None in found:
    raise ClowlabError(f"Cannot tell the format of {_names(files)} from the extension (or a `||` "
                       f"in the first line, for pipes). Pass format= (one of {list(FORMATS)}).")
  return found.pop()


def _sniff(path: str) -> str | None:
  """The format "pipes" if the first non-blank line of a file with an unknown extension
  contains `||`, else None."""
  for _, line in _read_lines(path):
    if line.strip():
      return "pipes" if _PIPE in line else None
  return None


def _default_header(header: bool | None, columns, names, fmt: str) -> bool:
  if fmt == "jsonl":
    return False
  if header is not None:
    return header
  return not (names or (columns and all(isinstance(c, int) for c in columns)))


def _header_keys(path: str, fmt: str) -> list[str] | None:
  """The first non-blank row of a CSV/TSV/pipes file (its header), or None if the file is empty."""
  for line_no, line in _read_lines(path):
    if line.strip():
      try:
        return [k.strip() for k in next(_csv_reader([line], fmt))]
      except csv.Error as e:
        raise _csv_error(e, path, line_no, fmt) from None
  return None


def _column_keys(path: str, fmt: str, header: bool, names, columns) -> list[str | int]:
  """What to look up in each record: field indices (CSV/TSV/pipes) or keys (JSONL)."""
  if fmt == "jsonl":
    bad = [c for c in columns if not isinstance(c, str)]
    if bad:
      raise ClowlabError(f"columns={tuple(columns)!r}: {path} is JSONL, so columns must be key "
                         "names, not indices. Pass the JSON keys.")
    return list(columns)
  if any(isinstance(c, bool) or isinstance(c, int) and c < 0 for c in columns):
    raise ClowlabError(f"columns={tuple(columns)!r}: indices must be non-negative integers.")
  keys = list(names) if names else _header_keys(path, fmt) if header else None
  if header and keys is None or not header and _header_keys(path, fmt) is None:
    raise ClowlabError(f"{path} is empty. Check the path, or remove it from the inputs.")
  indices = []
  for c in columns:
    if isinstance(c, int):
      indices.append(c)
    elif keys is None:
      raise ClowlabError(f"columns={tuple(columns)!r} are names but {path} is read without a "
                         "header. Use integer columns, or pass names=(...) for all fields.")
    elif c not in keys:
      raise ClowlabError(f"{path} has no column {c!r}; its columns are {keys}. Pass columns= "
                         "naming existing columns (or integer indices with header=False for "
                         "headerless files).")
    else:
      indices.append(keys.index(c))
  return indices


def _guess_pair_columns(path: str, fmt: str, header: bool, names) -> tuple[str, ...]:
  if fmt == "jsonl":
    first = next(iter(_read_records(path, fmt, header)), (0, None))[1]
    if first is None:
      raise ClowlabError(f"{path} is empty (no JSON object). Check the path, or remove it from "
                         "the inputs.")
    keys = list(first)
  else:
    keys = list(names) if names else _header_keys(path, fmt) if header else None
  if keys is None:
    raise ClowlabError(f"{path} has no header, so the pair columns cannot be guessed. Pass "
                       "columns=(0, 1, 2) (indices of first text, second text, label).")
  for a, b in _PAIR_GUESSES:
    if a in keys and b in keys:
      label = next((c for c in _LABEL_GUESSES if c in keys), None)
      return (a, b) if label is None else (a, b, label)
  raise ClowlabError(f"{path}: cannot guess the pair columns from {keys}. "
                     "Pass columns=('first', 'second'[, 'label']).")


def _names(files: Sequence[str]) -> str:
  return files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more files)"
