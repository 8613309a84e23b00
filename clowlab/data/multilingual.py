"""Multilingual training text for cross-lingual pretraining (InfoXLM): monolingual text per
language, translation pairs, removal of evaluation sentences, and language-balanced sampling.

    corpus = prepare(mono=[...], parallel=[...], exclude=[...], cache_dir=DIR)
    corpus.mono_files   # {lang: text file}, corpus.parallel_file (TSV src, tgt), corpus.stats
    idx = balanced_indices({"en": 90_000, "sw": 1_000}, alpha=0.7, seed=0)   # {lang: rows}

Source specs are strings, so they can be set on the command line:
  mono      "LANG:PATH"                   plain text, one text per line (.gz ok)
            "LANG:PATH#COLUMN"            one column (name, or 0-based index) of a CSV/TSV/JSONL
            "LANG:PATH#@chars"            a one-token-per-line (CoNLL) file, e.g. MSRA NER
            "LANG:PATH#@tokens"           `char<TAB>tag`: one text per blank-line-separated
                                          block, its lines' first fields joined with nothing
                                          (@chars: Chinese characters) or single spaces (@tokens)
  parallel  "SRC-TGT:PATH[#C1,C2]"        a two-column CSV/TSV/JSONL (default: the first two
                                          fields; other extensions are read as TSV), e.g.
                                          Tatoeba/manythings cmn.txt: en<TAB>zh
            "SRC-TGT:SRC_PATH|TGT_PATH"   two line-aligned plain-text files (Multi30k)
            "SRC-TGT:SRC_PATH|TGT_PATH#C1[,C2...]"
                                          two row-aligned tables: each listed column gives one
                                          pair per row (translated STS-B: sentence1, sentence2)
  exclude   "PATH" or "PATH#COLUMN"       every sentence in it is removed from all training
                                          text (monolingual lines and either side of a pair):
                                          the Tatoeba test sets, so retrieval is not measured on
                                          memorised sentences.
Monolingual lines are split into sentences (at . ! ? 。 ！ ？ followed by space or CJK end);
with `mono_from_parallel` each side of every pair is monolingual text of its language too.
Duplicates are dropped (per language; per pair). Sentences are compared after collapsing
whitespace. Empty text is skipped, as in `clowlab.data.sources`: blank lines / empty fields of
monolingual sources with their count logged at INFO (blank lines separate paragraphs; in
one-token-per-line files they separate texts), pairs with an empty side with one logged warning
per source (count and first pair); a source with no text at all is an error. Unreadable files
(bad UTF-8, NUL bytes, broken .gz, malformed tables) raise `ClowlabError` naming the file and
line, before anything is written.

The prepared text is written once (atomically) under cache_dir/multilingual/<hash of the
specs and the files' size and mtime>, so tokenization caches stay valid and reruns are free.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence

import numpy as np

from clowlab.data import sources
from clowlab.errors import ClowlabError

logger = logging.getLogger(__name__)

_VERSION = 1
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")
_LANG = re.compile(r"^[A-Za-z][A-Za-z_]{0,15}$")
# Pseudo-columns of one-token-per-line files -> the separator that joins a block's tokens.
_CONLL_JOIN = {"@chars": "", "@tokens": " "}


def normalize(text: str) -> str:
  return " ".join(text.split())


@dataclasses.dataclass(frozen=True)
class Corpus:
  mono_files: dict[str, str]          # lang -> text file (one sentence per line)
  parallel_file: str | None           # TSV: src, tgt, src_lang, tgt_lang (no header)
  stats: dict                         # counts per language / pair, sentences excluded


# ----------------------------------------------------------------------------------------------
# Spec parsing


def _split_columns(spec: str) -> tuple[str, list[str | int] | None]:
  path, _, cols = spec.partition("#")
  if not cols:
    return path, None
  out: list[str | int] = [int(c) if c.strip().isdigit() else c.strip() for c in cols.split(",")]
  return path, out


def lang_and_path(spec: str, what: str, pair: bool) -> tuple[str, str]:
  lang, sep, rest = spec.partition(":")
  langs = lang.split("-")
  if not sep or not rest or len(langs) != (2 if pair else 1) or not all(
      _LANG.match(x) for x in langs):
    example = "en-de:train.en.gz|train.de.gz" if pair else "en:wiki.txt"
    raise ClowlabError(f"clowlab: data.{what} entry {spec!r} is not "
                       f"{'SRC-TGT' if pair else 'LANG'}:PATH[...]; e.g. {example!r}.")
  return lang, rest


def _lines(path: str) -> list[str]:
  """Every line of a text file (.gz ok), stripped, blank ones kept (they keep files aligned)."""
  # The one UTF-8 / gzip reader of clowlab.data (line numbers in its decode errors).
  return [line.strip() for _, line in
          sources._read_lines(sources._check_files(path)[0])]  # noqa: SLF001


def file_texts(spec: str) -> list[str]:
  """The texts of one 'PATH' or 'PATH#COLUMN' spec."""
  path, cols = _split_columns(spec)
  if cols is None:
    lines = _lines(path)
    texts = [line for line in lines if line]
    _log_blank(len(lines) - len(texts), "blank lines", spec)
    return texts
  if len(cols) != 1:
    raise ClowlabError(f"clowlab: {spec!r} names {len(cols)} columns; a text source takes one "
                       "(PATH#COLUMN).")
  if isinstance(cols[0], str) and cols[0].startswith("@"):
    return _conll_texts(spec, path, cols[0])
  rows, _ = sources.read_columns(path, cols)
  texts = [r[0].strip() for r in rows if r[0].strip()]
  _log_blank(len(rows) - len(texts), "empty fields", spec)
  return texts


def _log_blank(count: int, what: str, spec: str) -> None:
  if count:
    logger.info("clowlab: skipped %d %s of %s.", count, what, spec)


def _conll_texts(spec: str, path: str, name: str) -> list[str]:
  """One text per blank-line-separated block of a one-token-per-line file (`token<TAB>tag`)."""
  if name not in _CONLL_JOIN:
    raise ClowlabError(f"clowlab: {spec!r}: unknown pseudo-column {name!r}; one-token-per-line "
                       f"files take {', '.join(_CONLL_JOIN)}. Use one of those, or a real column.")
  texts, block = [], []
  for line in _lines(path) + [""]:  # the sentinel closes the last block
    if line:
      block.append(line.split()[0])
    elif block:  # consecutive blank lines make no empty text
      texts.append(_CONLL_JOIN[name].join(block))
      block = []
  return texts


def _pairs(spec: str) -> tuple[str, str, list[tuple[str, str]]]:
  langs, rest = lang_and_path(spec, "parallel", pair=True)
  src_lang, tgt_lang = langs.split("-")
  paths, cols = _split_columns(rest)
  if "|" in paths:
    src_path, tgt_path = paths.split("|", 1)
    if cols is None:
      src, tgt = _lines(src_path), _lines(tgt_path)
      if len(src) != len(tgt):
        raise ClowlabError(f"clowlab: parallel files are not aligned: {src_path} has {len(src)} "
                           f"lines but {tgt_path} has {len(tgt)}. Pass line-aligned files.")
      pairs = list(zip(src, tgt))
    else:
      src_rows, _ = sources.read_columns(src_path, cols)
      tgt_rows, _ = sources.read_columns(tgt_path, cols)
      if len(src_rows) != len(tgt_rows):
        raise ClowlabError(f"clowlab: parallel tables are not row-aligned: {src_path} has "
                           f"{len(src_rows)} rows but {tgt_path} has {len(tgt_rows)}.")
      pairs = [(s[i], t[i]) for i in range(len(cols)) for s, t in zip(src_rows, tgt_rows)]
  else:
    # Bitext files (.txt) are tab-separated: Tatoeba/manythings, OPUS "moses" TSVs.
    known = os.path.splitext(paths.removesuffix(".gz"))[1].lower() in (".csv", ".tsv", ".jsonl",
                                                                        ".json")
    rows, _ = sources.read_columns(paths, cols or [0, 1], format=None if known else "tsv")
    if cols is not None and len(cols) != 2:
      raise ClowlabError(f"clowlab: data.parallel entry {spec!r}: a one-file source takes two "
                         "columns (#SRC,TGT).")
    pairs = [(r[0], r[1]) for r in rows]
  return src_lang, tgt_lang, [(s.strip(), t.strip()) for s, t in pairs]


def split_sentences(text: str) -> list[str]:
  return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


# ----------------------------------------------------------------------------------------------
# Preparation


def _signature(specs: Iterable[str]) -> list:
  out = []
  for spec in specs:
    for part in re.split(r"[|]", spec.split(":", 1)[-1].partition("#")[0]):
      p = os.path.abspath(os.path.expanduser(part))
      st = os.stat(p) if os.path.exists(p) else None
      out.append((p, st.st_size if st else None, st.st_mtime_ns if st else None))
  return out


def excluded_sentences(exclude: Sequence[str]) -> set[str]:
  out: set[str] = set()
  for spec in exclude:
    out.update(normalize(t) for t in file_texts(spec))
  return out


def prepare(*, mono: Sequence[str] = (), parallel: Sequence[str] = (),
            exclude: Sequence[str] = (), mono_from_parallel: bool = True,
            cache_dir: str) -> Corpus:
  """Reads, filters and writes the training text once; see the module doc."""
  mono, parallel, exclude = list(mono), list(parallel), list(exclude)
  if not mono and not parallel:
    raise ClowlabError("clowlab: no multilingual training text: set data.mono (LANG:PATH ...) "
                       "and/or data.parallel (SRC-TGT:PATH ...).")
  key = hashlib.sha1(json.dumps([_VERSION, mono, parallel, exclude, mono_from_parallel,
                                 _signature(mono + parallel + exclude)]).encode()).hexdigest()[:16]
  out_dir = os.path.join(os.path.abspath(os.path.expanduser(cache_dir)), "multilingual", key)
  manifest = os.path.join(out_dir, "corpus.json")
  if os.path.isfile(manifest):
    return _load(out_dir)
  drop = excluded_sentences(exclude)
  texts: dict[str, dict[str, None]] = {}   # lang -> ordered set of sentences
  n_dropped = {"mono": 0, "pairs": 0}

  def add(lang: str, sentence: str) -> None:
    s = normalize(sentence)
    if not s:
      return
    if s in drop:
      n_dropped["mono"] += 1
      return
    texts.setdefault(lang, {})[s] = None

  for spec in mono:
    lang, rest = lang_and_path(spec, "mono", pair=False)
    lines = file_texts(rest)
    if not lines:
      raise ClowlabError(f"clowlab: data.mono entry {spec!r}: {rest.partition('#')[0]} holds no "
                         "text (it is empty or only blank). Check the path, or remove the entry.")
    for line in lines:
      for s in split_sentences(line):
        add(lang, s)
  pairs: dict[tuple[str, str, str, str], None] = {}
  pair_counts: dict[str, int] = {}
  for spec in parallel:
    src_lang, tgt_lang, got = _pairs(spec)
    name = f"{src_lang}-{tgt_lang}"
    blank, first_blank = 0, None
    for i, (s, t) in enumerate(got):
      s, t = normalize(s), normalize(t)
      if not s or not t:
        blank += 1
        first_blank = i + 1 if first_blank is None else first_blank
        continue
      if s in drop or t in drop:
        n_dropped["pairs"] += 1
        continue
      if (s, t, src_lang, tgt_lang) not in pairs:
        pairs[(s, t, src_lang, tgt_lang)] = None
        pair_counts[name] = pair_counts.get(name, 0) + 1
      if mono_from_parallel:
        add(src_lang, s)
        add(tgt_lang, t)
    if blank == len(got):
      raise ClowlabError(f"clowlab: data.parallel entry {spec!r} holds no pair with text on both "
                         "sides (its files are empty or blank). Check the paths, or remove the "
                         "entry.")
    if blank:
      logger.warning("clowlab: skipped %d pairs with an empty side in data.parallel entry %r "
                     "(first: pair %d).", blank, spec, first_blank)
  if not texts:
    raise ClowlabError("clowlab: the multilingual sources hold no text after removing the "
                       "excluded sentences. Check data.mono / data.parallel / data.exclude.")
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{key}.")
  try:
    mono_files = {}
    for lang, sentences in sorted(texts.items()):
      mono_files[lang] = f"mono.{lang}.txt"
      with open(os.path.join(tmp, mono_files[lang]), "w", encoding="utf-8") as f:
        f.writelines(s + "\n" for s in sentences)
    if pairs:
      with open(os.path.join(tmp, "parallel.tsv"), "w", encoding="utf-8") as f:
        f.writelines("\t".join(p) + "\n" for p in pairs)
    stats = {"mono": {lang: len(s) for lang, s in sorted(texts.items())}, "pairs": pair_counts,
             "excluded_sentences": len(drop), "dropped_mono": n_dropped["mono"],
             "dropped_pairs": n_dropped["pairs"]}
    with open(os.path.join(tmp, "corpus.json"), "w") as f:
      json.dump({"mono_files": mono_files, "parallel_file": "parallel.tsv" if pairs else None,
                 "stats": stats}, f, indent=1)
    try:
      os.replace(tmp, out_dir)
    except OSError:  # another process finished the same preparation first
      if not os.path.isfile(manifest):
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return _load(out_dir)


def _load(out_dir: str) -> Corpus:
  with open(os.path.join(out_dir, "corpus.json")) as f:
    m = json.load(f)
  return Corpus({k: os.path.join(out_dir, v) for k, v in m["mono_files"].items()},
                m["parallel_file"] and os.path.join(out_dir, m["parallel_file"]), m["stats"])


# ----------------------------------------------------------------------------------------------
# Language sampling


def sampling_probs(counts: dict[str, int], alpha: float) -> dict[str, float]:
  """q_l = p_l^alpha / sum_k p_k^alpha with p_l = n_l / N (XLM / XLM-R; alpha < 1 upsamples
  low-resource languages)."""
  if not 0 < alpha <= 1:
    raise ClowlabError(f"clowlab: data.alpha={alpha} must be in (0, 1] (XLM-R uses 0.3, XLM "
                       "0.5/0.7; 1 = proportional).")
  total = sum(counts.values())
  w = {lang: (n / total) ** alpha for lang, n in counts.items() if n > 0}
  z = sum(w.values())
  return {lang: v / z for lang, v in w.items()}


def balanced_indices(counts: dict[str, int], alpha: float, seed: int,
                     size: int | None = None) -> dict[str, np.ndarray]:
  """Row indices per language for one sampled epoch of `size` rows (default: all rows): round(q_l
  * size) rows of language l, without repetition while they last (a seeded permutation, repeated
  for upsampled languages)."""
  q = sampling_probs(counts, alpha)
  size = sum(counts.values()) if size is None else int(size)
  rng = np.random.default_rng(seed)
  out = {}
  for lang in sorted(q):
    m, n = int(round(q[lang] * size)), counts[lang]
    reps = -(-m // n) if m else 0
    perm = np.concatenate([rng.permutation(n) for _ in range(reps)]) if reps else \
        np.zeros(0, np.int64)
    out[lang] = perm[:m].astype(np.int64)
  return out

