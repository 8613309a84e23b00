"""Chinese word segmentation (jieba) aligned to a character-level tokenizer.

CLOWER needs, for every jieba word, which characters and which tokens it covers. jieba gives
character spans; the fast tokenizer gives per-token character offsets; `token_word_ids` joins
the two so every token carries the index of its word.

jieba is used through a private `jieba.Tokenizer` instance: its prefix-dictionary cache is written
only to the cache directory given here (jieba's module default is the system temp dir) and the
module-level `jieba.dt` is never touched.
"""
from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Sequence
from typing import Any

from clowlab.errors import ClowlabError

Span = tuple[int, int]  # [start, end) in characters (or tokens)

_CACHE_FILE = "jieba.cache"


def default_cache_dir() -> str:
  """$CLOWLAB_CACHE/jieba, else ~/.cache/clowlab/jieba."""
  from clowlab import paths  # noqa: PLC0415 - etils only when a default is needed
  return os.path.join(paths.cache_root(), "jieba")


_LOAD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def _load_jieba(user_dict: str | None, cache_dir: str) -> Any:
  """A private jieba.Tokenizer per (user dict, cache dir), shared: its dictionary is ~100 MB."""
  import jieba  # pylint: disable=import-outside-toplevel
  os.makedirs(cache_dir, exist_ok=True)
  tk = jieba.Tokenizer()
  tk.tmp_dir = cache_dir
  tk.cache_file = _CACHE_FILE
  tk.initialize()
  if user_dict is not None:
    try:
      tk.load_userdict(user_dict)
    except (ValueError, AttributeError) as e:
      raise ClowlabError(
          f"clowlab: jieba user dictionary {user_dict} could not be read ({e}). "
          "Use a UTF-8 file with one 'word [freq] [tag]' per line.") from e
  return tk


class JiebaSegmenter:
  """jieba word segmentation returning character spans.

  user_dict: optional jieba user dictionary ("word [freq] [tag]" per line, UTF-8) added on top of
    jieba's default dictionary.
  cache_dir: where jieba's prefix-dictionary cache goes (default `default_cache_dir()`).
  The dictionary is loaded on first use (~1 s) and shared by segmenters with the same settings in
  a process; pickling sends only the settings.
  """

  def __init__(self, user_dict: str | None = None, cache_dir: str | None = None, *,
               hmm: bool = True):
    if user_dict is not None and not os.path.isfile(user_dict):
      raise ClowlabError(
          f"clowlab: jieba user dictionary {user_dict} does not exist. "
          "Pass the path of an existing UTF-8 file with one 'word [freq] [tag]' per line, or none.")
    self.user_dict = None if user_dict is None else os.path.abspath(user_dict)
    self.cache_dir = os.path.abspath(cache_dir or default_cache_dir())
    self.hmm = hmm

  def __repr__(self) -> str:
    return f"JiebaSegmenter(user_dict={self.user_dict!r}, cache_dir={self.cache_dir!r})"

  def _tokenizer(self) -> Any:
    with _LOAD_LOCK:
      return _load_jieba(self.user_dict, self.cache_dir)

  def fingerprint(self) -> str:
    """Stable hash of the settings that decide the segmentation (not the cache location)."""
    import jieba  # pylint: disable=import-outside-toplevel
    h = hashlib.sha256(f"jieba {jieba.__version__} hmm={self.hmm}".encode())
    if self.user_dict is not None:
      with open(self.user_dict, "rb") as f:
        h.update(f.read())
    return h.hexdigest()

  def words(self, text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) for every jieba word, whitespace included."""
    return list(self._tokenizer().tokenize(text, mode="default", HMM=self.hmm))

  def segment(self, text: str) -> list[Span]:
    """Character spans of the non-whitespace jieba words of `text`, in order."""
    return [(s, e) for w, s, e in self.words(text) if not w.isspace()]


def segment(text: str, *, user_dict: str | None = None, cache_dir: str | None = None) -> list[Span]:
  """Character spans of the jieba words in `text` (whitespace dropped); see `JiebaSegmenter`."""
  return JiebaSegmenter(user_dict, cache_dir).segment(text)


def token_word_ids(offsets: Sequence[Span], spans: Sequence[Span]) -> list[int]:
  """Index of the word each token belongs to, given token char offsets and word char spans.

  A token belongs to the word containing its characters. When one token straddles several words
  (e.g. a wordpiece across a jieba boundary) those words are merged, so every token lies inside
  exactly one word and each word's tokens are contiguous. Tokens covering no characters (special
  tokens) get -1. A token whose characters are in no span gets a word of its own. Word indices are
  renumbered 0..n-1 in order of appearance, so merged or token-less words leave no gaps.
  """
  n_chars = max([e for _, e in spans] + [e for _, e in offsets] + [0])
  char_word = [-1] * n_chars
  for w, (s, e) in enumerate(spans):
    char_word[s:e] = [w] * (e - s)

  parent = list(range(len(spans)))

  def root(w: int) -> int:
    while parent[w] != w:
      parent[w] = parent[parent[w]]
      w = parent[w]
    return w

  first_word: list[int | None] = []  # per token: some word it covers (None: no chars / no word)
  for s, e in offsets:
    covered = sorted({char_word[c] for c in range(s, e) if char_word[c] >= 0})
    first_word.append(covered[0] if covered else (None if e <= s else -1))
    for w in covered[1:]:
      parent[root(w)] = root(covered[0])

  dense: dict[Any, int] = {}
  out = []
  for t, w in enumerate(first_word):
    if w is None:
      out.append(-1)
      continue
    key = ("own", t) if w == -1 else root(w)
    out.append(dense.setdefault(key, len(dense)))
  return out


def word_token_spans(word_ids: Sequence[int]) -> list[Span]:
  """[start, end) token span of each word id 0..n-1 (from `Tokenizer.encode(...)['word_ids']`)."""
  spans: dict[int, list[int]] = {}
  for t, w in enumerate(word_ids):
    if w >= 0:
      spans.setdefault(w, [t, t + 1])[1] = t + 1
  return [tuple(spans[w]) for w in sorted(spans)]


def word_char_spans(word_ids: Sequence[int], offsets: Sequence[Span]) -> list[Span]:
  """[start, end) character span of each word id, from `encode(..., return_offsets=True)`.

  Offsets are relative to the word's own segment text (first or second text of a pair).
  """
  spans: dict[int, list[int]] = {}
  for w, (s, e) in zip(word_ids, offsets):
    if w >= 0:
      span = spans.setdefault(w, [s, e])
      span[0], span[1] = min(span[0], s), max(span[1], e)
  return [tuple(spans[w]) for w in sorted(spans)]
