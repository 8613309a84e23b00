"""Cross-lingual evaluation (as InfoXLM / XTREME report it): Tatoeba bitext retrieval and
cross-lingual STS.

    r = xlingual.tatoeba(embedder, "../shared/data/tatoeba", ["cmn", "deu"])
    # {"tatoeba_cmn_xx2en": 71.2, "tatoeba_cmn_en2xx": 70.4, "tatoeba_cmn": 70.8, ...,
    #  "tatoeba_avg": ..., "tatoeba_avg_xx2en": ..., "tatoeba_avg_en2xx": ...}
    r = xlingual.cross_lingual_sts(embedder, "../shared/data/stsb_multi_mt", ["en-zh", "en-de"])
    # {"xsts_en_zh": 61.0, "xsts_en_zh_pearson": 60.2, ..., "xsts_avg": ...}
    drop = xlingual.tatoeba_sentences("../shared/data/tatoeba")   # keep out of training data

Tatoeba (LASER's test set): `tatoeba.<xxx>-eng.<xxx>` and `tatoeba.<xxx>-eng.eng`, line i of one
translating line i of the other. Each sentence's nearest neighbour by cosine among the other
side's sentences (`retrieval.search`, exact) must be its translation: top-1 accuracy in %, xx->en
and en->xx. Ties go to the lower line number (a file may hold the same sentence twice).
Per language `tatoeba_<xxx>` is the mean of both directions; `tatoeba_avg*` average languages.

Cross-lingual STS (stsb_multi_mt: headerless `sentence1,sentence2,score` CSVs whose rows are
translations across languages): pair "a-b" scores sentence1 of stsb-a-<split>.csv against
sentence2 of stsb-b-<split>.csv with the gold score of the a file (the files must agree on every
score); Spearman and Pearson x 100 of cosine similarity, `xsts_avg` the mean Spearman over pairs.

The embedder is any callable texts -> [n, D] array (e.g. clowlab.embed.load(...)); each distinct
sentence is embedded once per call.
"""
from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Callable, Sequence

import numpy as np

from clowlab.data import multilingual
from clowlab.errors import ClowlabError
from clowlab.evaluators import retrieval, sts

_TATOEBA = re.compile(r"^tatoeba\.([a-z]+)-eng\.\1$")
_STSB = re.compile(r"^stsb-([A-Za-z_]+)-([A-Za-z]+)\.csv$")


def _names(spec: Sequence[str] | str | None) -> list[str] | None:
  """A list from "a,b" or ["a", "b"] (order kept, duplicates and blanks dropped); None stays."""
  if spec is None:
    return None
  items = spec.split(",") if isinstance(spec, str) else list(spec)
  out = []
  for s in (str(x).strip() for x in items):
    if s and s not in out:
      out.append(s)
  return out


def _embed_unique(embedder: Callable, texts: Sequence[str]) -> dict[str, np.ndarray]:
  """{text: vector}, each distinct text embedded once."""
  uniq = list(dict.fromkeys(texts))
  vecs = np.asarray(embedder(uniq), np.float32) if uniq else np.zeros((0, 0), np.float32)
  if vecs.ndim != 2 or len(vecs) != len(uniq):
    raise ClowlabError(f"clowlab: the embedder returned shape {vecs.shape} for {len(uniq)} "
                       "texts; it must return one row per text.")
  return dict(zip(uniq, vecs))


def _stack(table: dict[str, np.ndarray], texts: Sequence[str]) -> np.ndarray:
  return np.stack([table[t] for t in texts])


# ---------------------------------------------------------------------------------------------
# Tatoeba


def tatoeba_languages(data_dir: str | os.PathLike) -> list[str]:
  """The languages xxx with a tatoeba.xxx-eng.xxx file in data_dir, sorted."""
  d = pathlib.Path(data_dir)
  if not d.is_dir():
    raise ClowlabError(f"clowlab: Tatoeba directory {d} does not exist; pass the folder holding "
                       "tatoeba.<xxx>-eng.<xxx> and tatoeba.<xxx>-eng.eng files.")
  return sorted(m.group(1) for p in d.iterdir() if (m := _TATOEBA.match(p.name))
                and m.group(1) != "eng")


def _tatoeba_files(data_dir, languages) -> dict[str, tuple[pathlib.Path, pathlib.Path]]:
  d = pathlib.Path(data_dir)
  present = tatoeba_languages(d)
  langs = _names(languages)
  if langs is None:
    langs = present
  if not langs:
    raise ClowlabError(f"clowlab: no tatoeba.<xxx>-eng.<xxx> files in {d}.")
  out = {}
  for lang in langs:
    src, eng = d / f"tatoeba.{lang}-eng.{lang}", d / f"tatoeba.{lang}-eng.eng"
    if lang not in present or not eng.is_file():
      missing = src if not src.is_file() else eng
      raise ClowlabError(f"clowlab: Tatoeba language {lang!r}: {missing} is missing; languages "
                         f"present in {d}: {', '.join(present) or 'none'}.")
    out[lang] = (src, eng)
  return out


def _read_aligned(src: pathlib.Path, eng: pathlib.Path) -> tuple[list[str], list[str]]:
  s, e = retrieval.read_lines(str(src)), retrieval.read_lines(str(eng))
  if len(s) != len(e):
    raise ClowlabError(f"clowlab: {src} has {len(s)} lines but {eng} has {len(e)}; Tatoeba files "
                       "must be line-aligned (line i of one translates line i of the other).")
  if not s:
    raise ClowlabError(f"clowlab: {src} is empty.")
  return s, e


def tatoeba(embedder: Callable, data_dir: str | os.PathLike,
            languages: Sequence[str] | str | None = None) -> dict[str, float]:
  """Top-1 bitext retrieval accuracy (%) per language, both directions, and averages.

  languages: e.g. ["cmn", "deu"] or "cmn,deu"; default: every tatoeba.xxx-eng.xxx in data_dir.
  """
  data = {lang: _read_aligned(*paths) for lang, paths in _tatoeba_files(data_dir,
                                                                        languages).items()}
  table = _embed_unique(embedder, [t for s, e in data.values() for t in (*s, *e)])
  out: dict[str, float] = {}
  for lang, (s_text, e_text) in data.items():
    s, e = _stack(table, s_text), _stack(table, e_text)
    gold = np.arange(len(s))
    xx2en, _ = retrieval.search(s, e, 1)
    en2xx, _ = retrieval.search(e, s, 1)
    out[f"tatoeba_{lang}_xx2en"] = 100 * float(np.mean(xx2en[:, 0] == gold))
    out[f"tatoeba_{lang}_en2xx"] = 100 * float(np.mean(en2xx[:, 0] == gold))
    out[f"tatoeba_{lang}"] = (out[f"tatoeba_{lang}_xx2en"] + out[f"tatoeba_{lang}_en2xx"]) / 2
  for suffix in ("", "_xx2en", "_en2xx"):
    out[f"tatoeba_avg{suffix}"] = float(np.mean([out[f"tatoeba_{lang}{suffix}"]
                                                 for lang in data]))
  return out


def tatoeba_sentences(data_dir: str | os.PathLike,
                      languages: Sequence[str] | str | None = None) -> set[str]:
  """Every non-empty sentence (stripped) of the Tatoeba test files of `languages` (default:
  all present), both sides: to keep test sentences out of training data."""
  out: set[str] = set()
  for src, eng in _tatoeba_files(data_dir, languages).values():
    for path in (src, eng):
      out.update(s for s in (line.strip() for line in retrieval.read_lines(str(path))) if s)
  return out


# ---------------------------------------------------------------------------------------------
# Cross-lingual STS


def stsb_languages(data_dir: str | os.PathLike, split: str = "test") -> list[str]:
  """The languages with an stsb-<lang>-<split>.csv file in data_dir, sorted."""
  d = pathlib.Path(data_dir)
  if not d.is_dir():
    raise ClowlabError(f"clowlab: STS directory {d} does not exist; pass the folder holding "
                       "stsb-<lang>-<split>.csv files (stsb_multi_mt).")
  return sorted(m.group(1) for p in d.iterdir() if (m := _STSB.match(p.name))
                and m.group(2) == split)


def _read_stsb(path: pathlib.Path, columns: Sequence = (0, 1, 2)
               ) -> tuple[list[str], list[str], np.ndarray]:
  """(sentence1s, sentence2s, scores) of a `sentence1,sentence2,score` CSV (headerless with
  integer columns, as stsb_multi_mt; named columns read the header)."""
  from clowlab.data import sources  # noqa: PLC0415
  rows, lines = sources.read_columns(str(path), tuple(columns))
  scores = np.zeros(len(rows), np.float64)
  for i, ((_, _, score), line) in enumerate(zip(rows, lines)):
    try:
      scores[i] = float(score)
    except ValueError:
      raise ClowlabError(f"clowlab: {path}:{line}: score {score!r} is not a number; stsb files "
                         "are headerless `sentence1,sentence2,score` CSVs.") from None
  return [r[0] for r in rows], [r[1] for r in rows], scores


def _parse_pair(pair: str) -> tuple[str, str]:
  parts = pair.split("-")
  if len(parts) != 2 or not all(parts):
    raise ClowlabError(f"clowlab: cross-lingual STS pair {pair!r} is not of the form a-b "
                       "(e.g. en-zh: English sentence 1, Chinese sentence 2).")
  return parts[0], parts[1]


def cross_lingual_sts(embedder: Callable, data_dir: str | os.PathLike,
                      pairs: Sequence[str] | str | None = None,
                      split: str = "test") -> dict[str, float]:
  """Spearman / Pearson x 100 of cosine(sentence1 in a, sentence2 in b) per pair "a-b".

  pairs: e.g. ["en-zh", "zh-en"] or "en-zh,en-de" ("b-a" is a different pair from "a-b");
    default: en-<xx> for every other language with a file for `split`.
  """
  d = pathlib.Path(data_dir)
  present = stsb_languages(d, split)
  names = _names(pairs)
  if names is None:
    names = [f"en-{x}" for x in present if x != "en"] if "en" in present else []
  if not names:
    raise ClowlabError(f"clowlab: no cross-lingual STS pairs to evaluate in {d} for split "
                       f"{split!r}; pass pairs such as en-zh (languages present: "
                       f"{', '.join(present) or 'none'}).")
  parsed = {name: _parse_pair(name) for name in names}
  sets = {}
  for lang in sorted({x for ab in parsed.values() for x in ab}):
    path = d / f"stsb-{lang}-{split}.csv"
    if not path.is_file():
      raise ClowlabError(f"clowlab: {path} is missing; languages with a {split!r} file in {d}: "
                         f"{', '.join(present) or 'none'}.")
    sets[lang] = (path, *_read_stsb(path))
  out = _score_pairs(embedder, {f"{a}_{b}": (sets[a], sets[b]) for a, b in parsed.values()})
  out["xsts_avg"] = float(np.mean([out[f"xsts_{a}_{b}"] for a, b in parsed.values()]))
  return out


def cross_lingual_sts_files(embedder: Callable, pairs: dict[str, tuple[str, str]],
                            columns: Sequence = (0, 1, 2)) -> dict[str, float]:
  """cross_lingual_sts on explicit row-aligned files: {"a-b": (path of a, path of b)} ->
  xsts_<a>_<b> (Spearman) and _pearson; `columns` name sentence1, sentence2, score."""
  out = {}
  for name, (path_a, path_b) in pairs.items():
    a, b = _parse_pair(name)
    sets = [(pathlib.Path(p), *_read_stsb(pathlib.Path(p), columns)) for p in (path_a, path_b)]
    out.update(_score_pairs(embedder, {f"{a}_{b}": tuple(sets)}))
  return out


def _score_pairs(embedder: Callable, pairs: dict[str, tuple[tuple, tuple]]) -> dict[str, float]:
  """{name: ((path, s1, s2, scores) of a, (...) of b)} -> xsts_<name> / _pearson; checks that
  the two files are row-aligned (equal scores)."""
  texts = []
  for (pa, a1, _, ga), (pb, _, b2, gb) in pairs.values():
    if len(ga) != len(gb):
      raise ClowlabError(f"clowlab: {pa} and {pb} are not aligned: {len(ga)} and {len(gb)} "
                         "rows; row i of one must translate row i of the other.")
    bad = np.flatnonzero(np.abs(ga - gb) > 1e-6)
    if len(bad):
      i = int(bad[0])
      raise ClowlabError(f"clowlab: {pa} and {pb} are not aligned: data row {i + 1} has score "
                         f"{ga[i]:g} in one and {gb[i]:g} in the other ({len(bad)} rows differ); "
                         "row i of one must translate row i of the other.")
    texts += a1 + b2
  table = _embed_unique(embedder, texts)
  out: dict[str, float] = {}
  for name, ((_, a1, _, gold), (_, _, b2, _)) in pairs.items():
    c = sts.correlations(sts.cosine(_stack(table, a1), _stack(table, b2)), gold)
    out[f"xsts_{name}"] = c["spearman"]
    out[f"xsts_{name}_pearson"] = c["pearson"]
  return out


# ---------------------------------------------------------------------------------------------
# Evaluator entries (evaluators/registry.py): the method's embedding, in batches of
# "batch_size" (default 64).


def _listed(value):
  """A config list (a tuple or ConfigDict list) as a list; "a,b" strings and None as given."""
  return value if value is None or isinstance(value, str) else list(value)


def run_tatoeba(spec: dict, ctx) -> dict[str, float]:
  """{"type": "tatoeba", "dir": DIR, "languages": [xxx, ...] (default: every pair in DIR)}."""
  return tatoeba(ctx.embedder(int(spec.get("batch_size", 64))), spec["dir"],
                 _listed(spec.get("languages")) or None)


def run_xsts(spec: dict, ctx) -> dict[str, float]:
  """{"type": "xsts", "dir": DIR, "pairs": ["en-zh", ...] (default: every pair in DIR),
  "split": "test"}."""
  return cross_lingual_sts(ctx.embedder(int(spec.get("batch_size", 64))), spec["dir"],
                           _listed(spec.get("pairs")), split=spec.get("split", "test"))


def run_bitext(spec: dict, ctx) -> dict[str, float]:
  """{"type": "bitext", "pairs": ["XX-YY:PATH_XX|PATH_YY[#COLUMN]", ...]}: retrieval accuracy
  of line-aligned files, both directions (bitext_<x>_<y>_<x>2<y> / _<y>2<x>)."""
  embedder = ctx.embedder(int(spec.get("batch_size", 64)))
  out = {}
  for pair in spec.get("pairs", []) or []:
    langs, rest = multilingual.lang_and_path(pair, "eval.bitext", pair=True)
    x, y = langs.split("-")
    files, col = rest.partition("#")[0], rest.partition("#")[2]
    src_path, _, tgt_path = files.partition("|")
    src = multilingual.file_texts(src_path + (f"#{col}" if col else ""))
    tgt = multilingual.file_texts(tgt_path + (f"#{col}" if col else ""))
    r = retrieval.evaluate_aligned(embedder, src, tgt)
    out[f"bitext_{x}_{y}_{x}2{y}"] = r["acc_source_to_target"]
    out[f"bitext_{x}_{y}_{y}2{x}"] = r["acc_target_to_source"]
  return out


def run_xsts_files(spec: dict, ctx) -> dict[str, float]:
  """{"type": "xsts_files", "pairs": ["XX-YY:PATH_XX|PATH_YY", ...]}: cross-lingual STS of
  row-aligned scored files (columns sentence1, sentence2, score)."""
  specs = {}
  for pair in spec.get("pairs", []) or []:
    langs, rest = multilingual.lang_and_path(pair, "eval.xsts", pair=True)
    specs[langs] = tuple(rest.split("|", 1))
  if not specs:
    return {}
  return cross_lingual_sts_files(ctx.embedder(int(spec.get("batch_size", 64))), specs,
                                 ("sentence1", "sentence2", "score"))
