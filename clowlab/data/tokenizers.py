"""One tokenizer interface: HF tokenizer dirs, raw sentencepiece models, jieba-segmented Chinese.

Everything runs on a `tokenizers.Tokenizer` (Rust) backend:
  * HF dirs are loaded with `transformers.AutoTokenizer` (so they encode exactly as transformers
    does) and their backend is copied;
  * a raw sentencepiece `.model` is converted with transformers' SentencePiece converter and given
    `<s> a </s></s> b </s>` templates (XLM-R style) or `[CLS] a [SEP] b [SEP]` when its pieces are
    BERT-style.
`encode` returns unpadded, truncated ids plus `word_ids` (word index per token, -1 for special
tokens) that word-level masking and CLOWER use. `save` writes files that
`transformers.AutoTokenizer.from_pretrained` loads into a tokenizer that encodes identically.

`save` also writes `clowlab_tokenizer.json`: the backend and special ids exactly as loaded, with
a hash of the HF files beside it. `load_tokenizer` reads a dir through it while the hash matches
(any edit of those files sends it back through AutoTokenizer). That skips importing transformers,
which imports torch when installed (3-4 s on every start), and keeps a workdir's tokenizer the
same after a transformers upgrade.
"""
from __future__ import annotations

import hashlib
import json
import operator
import os
import shutil
import threading
from collections.abc import Sequence
from typing import Any

import tokenizers as hf_tokenizers

from clowlab.data import chinese
from clowlab.errors import ClowlabError

WORD_SEGMENTERS = ("jieba",)

# Files an HF tokenizer dir can hold; `save` copies the ones present.
_HF_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spiece.model",
    "sentencepiece.model", "tokenizer.model", "bpe.codes")
# Any one of these marks a dir as an HF tokenizer dir (rather than a bare sentencepiece dir).
_HF_MARKERS = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")
# What `save` writes besides the HF files (see the module docstring).
EXACT_FILE = "clowlab_tokenizer.json"
_EXACT_VERSION = 1

# How word_ids are derived from an encoding.
_WORDS_PRETOKENIZER = "pretokenizer"  # the pre-tokenizer's words (WordPiece, byte-level BPE)
_WORDS_METASPACE = "metaspace"        # a piece starting with '▁' starts a word (sentencepiece)
_WORDS_JIEBA = "jieba"                # jieba words mapped through token offsets

_METASPACE = "\u2581"
_WORD_IDS_VERSION = 1  # bump when word_ids change for the same tokenizer files
_MAX_TRUNCATING_COPIES = 8  # backend copies kept, one per max_len seen


class Tokenizer:
  """Tokenizer with the attributes and methods the rest of clowlab codes against.

  Build it with `load_tokenizer`. Attributes:
    name: the path it was loaded from.
    vocab_size: number of ids incl. special/added tokens (rows the embedding matrix must have).
    pad_id, cls_id, sep_id, mask_id, unk_id: special ids (cls/sep are <s>/</s> for XLM-R style).
    special_ids: ids of all special tokens.
  """

  def __init__(self, backend: hf_tokenizers.Tokenizer, *, name: str, specials: dict[str, int],
               special_ids: frozenset[int], vocab_size: int, word_mode: str,
               segmenter: chinese.JiebaSegmenter | None = None, cleanup_spaces: bool = False,
               copy_from: tuple[str, str] | None = None,
               configs: dict[str, dict[str, Any]] | None = None):
    self.name = name
    self.vocab_size = vocab_size
    self._specials = dict(specials)
    self.pad_id = specials["pad"]
    self.cls_id = specials["cls"]
    self.sep_id = specials["sep"]
    self.mask_id = specials["mask"]
    self.unk_id = specials["unk"]
    self.special_ids = special_ids
    self._backend = backend  # padding and truncation disabled
    self._word_mode = word_mode
    self._segmenter = segmenter
    self._cleanup_spaces = cleanup_spaces
    self._copy_from = copy_from  # HF dirs: (source dir, tokenizer class name) for `save`
    self._configs = configs or {}  # converted models: json files `save` writes by tokenizer.json
    self._truncating: dict[int, hf_tokenizers.Tokenizer] = {}
    self._lock = threading.Lock()
    self._fingerprint: str | None = None

  def __repr__(self) -> str:
    return f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, words={self._word_mode})"

  def __getstate__(self) -> dict[str, Any]:
    state = dict(self.__dict__)
    state.pop("_lock")
    state["_truncating"] = {}
    return state

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__dict__.update(state)
    self._lock = threading.Lock()

  @property
  def fingerprint(self) -> str:
    """Stable hash of everything `encode` output depends on (keys caches of tokenized data)."""
    if self._fingerprint is None:
      h = hashlib.sha256(self._backend.to_str().encode("utf-8"))
      h.update(f"|{_WORD_IDS_VERSION}|{self._word_mode}|".encode())
      if self._segmenter is not None:
        h.update(self._segmenter.fingerprint().encode())
      self._fingerprint = h.hexdigest()
    return self._fingerprint

  @property
  def backend(self) -> hf_tokenizers.Tokenizer:
    """The `tokenizers.Tokenizer` (no padding, no truncation). Do not mutate it."""
    return self._backend

  def id_to_token(self, i: int) -> str | None:
    return self._backend.id_to_token(i)

  def token_to_id(self, token: str) -> int | None:
    return self._backend.token_to_id(token)

  # ---- encode ---------------------------------------------------------------------------------

  def encode(self, texts: Sequence[str], texts_pair: Sequence[str] | None = None, *, max_len: int,
             add_special_tokens: bool = True,
             return_offsets: bool = False) -> dict[str, list[list[Any]]]:
    """Unpadded ids truncated to max_len tokens INCLUDING special tokens.

    Pairs are `[CLS] a [SEP] b [SEP]` / `<s> a </s></s> b </s>` as the model family does; pairs are
    truncated longest-first like transformers' `truncation=True`. Keys: 'input_ids',
    'token_type_ids', 'word_ids' (word index per token counted across both texts, 0..n-1 in order;
    -1 for special tokens) and, with return_offsets, 'offsets' ((start, end) characters of each
    token in its own text; (0, 0) for special tokens).
    """
    texts = _check_texts("texts", texts)
    if texts_pair is not None:
      texts_pair = _check_texts("texts_pair", texts_pair)
      if len(texts_pair) != len(texts):
        raise ValueError(f"texts has {len(texts)} items but texts_pair has {len(texts_pair)}.")
    backend = self._truncating_backend(max_len, texts_pair is not None, add_special_tokens)
    inputs = texts if texts_pair is None else list(zip(texts, texts_pair))
    encodings = backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
    out: dict[str, list[list[Any]]] = {"input_ids": [], "token_type_ids": [], "word_ids": []}
    if return_offsets:
      out["offsets"] = []
    for i, enc in enumerate(encodings):
      pair = (texts[i],) if texts_pair is None else (texts[i], texts_pair[i])
      out["input_ids"].append(list(enc.ids))
      out["token_type_ids"].append(list(enc.type_ids))
      out["word_ids"].append(self._word_ids(enc, pair))
      if return_offsets:
        out["offsets"].append([tuple(o) for o in enc.offsets])
    return out

  def _truncating_backend(self, max_len: int, is_pair: bool,
                          add_special_tokens: bool) -> hf_tokenizers.Tokenizer:
    max_len = operator.index(max_len)  # ints incl. numpy ints; floats are a TypeError
    n_special = self._backend.num_special_tokens_to_add(is_pair) if add_special_tokens else 0
    need = n_special + (2 if is_pair else 1)
    if max_len < need:
      raise ClowlabError(
          f"clowlab: max_len={max_len!r} is too small for tokenizer {self.name}: it needs room for "
          f"{n_special} special tokens and at least one token per text ({need} in all). "
          "Raise max_len.")
    # One truncating copy per max_len: changing truncation on a shared backend is not thread-safe.
    with self._lock:
      backend = self._truncating.get(max_len)
      if backend is None:
        if len(self._truncating) >= _MAX_TRUNCATING_COPIES:
          self._truncating.pop(next(iter(self._truncating)))  # drop the oldest copy
        backend = hf_tokenizers.Tokenizer.from_str(self._backend.to_str())
        backend.enable_truncation(max_len, strategy="longest_first")
        self._truncating[max_len] = backend
      return backend

  def _word_ids(self, enc: hf_tokenizers.Encoding, texts: tuple[str, ...]) -> list[int]:
    seq_ids = enc.sequence_ids
    special = [s is None or (t in self.special_ids and t != self.unk_id)
               for s, t in zip(seq_ids, enc.ids)]
    keys: list[Any] = [None] * len(enc.ids)
    if self._word_mode == _WORDS_JIEBA:
      for seq, text in enumerate(texts):
        pos = [i for i, s in enumerate(seq_ids) if s == seq and not special[i]]
        spans = self._segmenter.segment(text)
        ids = chinese.token_word_ids([enc.offsets[i] for i in pos], spans)
        for i, w in zip(pos, ids):
          keys[i] = (seq, w) if w >= 0 else (seq, "tok", i)
    elif self._word_mode == _WORDS_METASPACE:
      word, prev_seq = -1, None
      for i, (tok, seq) in enumerate(zip(enc.tokens, seq_ids)):
        if special[i]:
          prev_seq = None  # text after a special token starts a new word
          continue
        if tok.startswith(_METASPACE) or seq != prev_seq:
          word += 1
        keys[i], prev_seq = (seq, word), seq
    else:
      for i, (w, seq) in enumerate(zip(enc.word_ids, seq_ids)):
        if not special[i]:
          keys[i] = (seq, w) if w is not None else (seq, "tok", i)
    return _dense(keys)

  # ---- decode / save --------------------------------------------------------------------------

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
    ids = [int(i) for i in ids]  # numpy / jax integers are not accepted by tokenizers
    text = self._backend.decode(ids, skip_special_tokens=skip_special_tokens)
    return _clean_up_tokenization(text) if self._cleanup_spaces else text

  def save(self, out_dir: str) -> None:
    """Writes tokenizer files that `transformers.AutoTokenizer.from_pretrained(out_dir)` loads.

    HF dirs: their tokenizer files are copied. Raw sentencepiece models: tokenizer.json +
    tokenizer_config.json (class PreTrainedTokenizerFast) + special_tokens_map.json.
    """
    os.makedirs(out_dir, exist_ok=True)
    if self._copy_from is not None:
      _copy_hf_files(*self._copy_from, out_dir)
      tokenizer_class = self._copy_from[1]
    else:
      self._backend.save(os.path.join(out_dir, "tokenizer.json"))
      for fname, content in self._configs.items():
        with open(os.path.join(out_dir, fname), "w", encoding="utf-8") as f:
          json.dump(content, f, indent=2, ensure_ascii=False)
      tokenizer_class = self._configs.get("tokenizer_config.json", {}).get(
          "tokenizer_class", "PreTrainedTokenizerFast")
    exact = {
        "version": _EXACT_VERSION, "hf_files_sha256": _hf_files_sha256(out_dir),
        "tokenizer_class": tokenizer_class, "specials": self._specials,
        "special_ids": sorted(self.special_ids), "vocab_size": self.vocab_size,
        "word_mode": self._word_mode if self._segmenter is None else (
            _WORDS_METASPACE if _uses_metaspace(self._backend) else _WORDS_PRETOKENIZER),
        "cleanup_spaces": self._cleanup_spaces, "backend": self._backend.to_str()}
    tmp = os.path.join(out_dir, EXACT_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(exact, f, ensure_ascii=False)
    os.replace(tmp, os.path.join(out_dir, EXACT_FILE))


def _check_texts(arg: str, texts: Sequence[str]) -> list[str]:
  if isinstance(texts, str):
    raise TypeError(f"{arg} must be a sequence of strings, not a single string.")
  texts = list(texts)
  for t in texts:
    if not isinstance(t, str):
      raise TypeError(f"{arg} must contain strings, got {type(t).__name__}.")
  return texts


def _dense(keys: Sequence[Any]) -> list[int]:
  """Renumbers hashable keys 0..n-1 in order of first appearance; None -> -1."""
  ids: dict[Any, int] = {}
  return [-1 if k is None else ids.setdefault(k, len(ids)) for k in keys]


def _clean_up_tokenization(text: str) -> str:
  # Same replacements as transformers' clean_up_tokenization (for WordPiece decoders).
  for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
               (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
    text = text.replace(a, b)
  return text


def _uses_metaspace(backend: hf_tokenizers.Tokenizer) -> bool:
  """True for sentencepiece-style tokenizers whose pieces mark word starts with '▁'."""
  state = "".join(p.__getstate__().decode("utf-8")
                  for p in (backend.pre_tokenizer, backend.decoder) if p is not None)
  return "Metaspace" in state or _METASPACE in state or "\\u2581" in state


# ---- loading ------------------------------------------------------------------------------------

def load_tokenizer(path: str, *, word_segmenter: str | None = None, jieba_dict: str | None = None,
                   jieba_cache_dir: str | None = None) -> Tokenizer:
  """Loads an HF tokenizer dir, a sentencepiece `.model` file, or a dir holding only one `.model`.

  word_segmenter="jieba": word_ids come from jieba words (for character-level Chinese tokenizers);
  jieba_dict is an optional jieba user dictionary, jieba_cache_dir where jieba's cache goes.
  """
  path = os.fspath(path)
  if word_segmenter is not None and word_segmenter not in WORD_SEGMENTERS:
    raise ClowlabError(
        f"clowlab: word_segmenter={word_segmenter!r} (for tokenizer {path}) is not supported; "
        f"valid values are None and {', '.join(repr(w) for w in WORD_SEGMENTERS)}. "
        "Use one of those.")
  if not os.path.exists(path):
    raise ClowlabError(
        f"clowlab: tokenizer path {path} does not exist. "
        "Point it at an HF tokenizer dir or a sentencepiece .model file.")
  segmenter = (chinese.JiebaSegmenter(jieba_dict, jieba_cache_dir)
               if word_segmenter == "jieba" else None)
  if os.path.isfile(path):
    if not path.endswith(".model"):
      raise ClowlabError(
          f"clowlab: tokenizer path {path} is a file but not a sentencepiece .model file. "
          "Point it at a sentencepiece .model file or at the HF tokenizer dir that holds it.")
    return _load_spm(path, segmenter)
  names = set(os.listdir(path))
  if names & set(_HF_MARKERS):
    exact = _read_exact(path) if EXACT_FILE in names else None
    if exact is not None:
      return _load_exact(path, exact, segmenter)
    return _load_hf_dir(path, segmenter)
  models = sorted(n for n in names if n.endswith(".model"))
  if len(models) == 1:
    return _load_spm(os.path.join(path, models[0]), segmenter)
  if len(models) > 1:
    raise ClowlabError(
        f"clowlab: tokenizer dir {path} holds several sentencepiece models ({', '.join(models)}). "
        "Point the tokenizer path at one of the .model files.")
  raise ClowlabError(
      f"clowlab: tokenizer dir {path} has no recognisable tokenizer files (looked for "
      f"{', '.join(_HF_MARKERS)} or a sentencepiece *.model file). "
      "Point it at an HF model/tokenizer dir or a sentencepiece model.")


# Tokenizer files that are JSON objects; checked first so a broken one is named.
_JSON_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                         "added_tokens.json")


def _check_json_files(path: str) -> None:
  for fname in _JSON_TOKENIZER_FILES:
    f = os.path.join(path, fname)
    if not os.path.exists(f):
      continue
    try:
      with open(f, encoding="utf-8") as fh:
        content = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
      raise ClowlabError(
          f"clowlab: tokenizer file {f} is not readable JSON ({e}). Copy the tokenizer files "
          "saved with the model again (or re-save them with save_pretrained()).") from e
    if not isinstance(content, dict):
      raise ClowlabError(
          f"clowlab: tokenizer file {f} holds a JSON {type(content).__name__}, not an object. "
          "Copy the tokenizer files saved with the model again (or re-save them with "
          "save_pretrained()).")


def _bad_config_model_type(path: str) -> str | None:
  """repr of config.json's model_type when it is present but not a string (else None)."""
  try:
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
      cfg = json.load(f)
  except (OSError, ValueError, RecursionError):
    return None
  if isinstance(cfg, dict) and "model_type" in cfg and not isinstance(cfg["model_type"], str):
    return repr(cfg["model_type"])
  return None


def _hf_files_sha256(path: str) -> str:
  """Hash of the files AutoTokenizer reads in `path` (names and bytes)."""
  h = hashlib.sha256()
  for fname in sorted((*_HF_TOKENIZER_FILES, "config.json")):
    f = os.path.join(path, fname)
    if os.path.isfile(f):
      with open(f, "rb") as fh:
        h.update(f"{fname}\0{os.path.getsize(f)}\0".encode() + fh.read())
  return h.hexdigest()


def _read_exact(path: str) -> dict[str, Any] | None:
  """The dir's clowlab_tokenizer.json if it is readable and matches the HF files beside it."""
  try:
    with open(os.path.join(path, EXACT_FILE), encoding="utf-8") as f:
      exact = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
    return None  # damaged or unreadable: the HF files are the source of truth
  if not (isinstance(exact, dict) and exact.get("version") == _EXACT_VERSION
          and exact.get("hf_files_sha256") == _hf_files_sha256(path)):
    return None
  return exact


def _load_exact(path: str, exact: dict[str, Any],
                segmenter: chinese.JiebaSegmenter | None) -> Tokenizer:
  try:
    backend = hf_tokenizers.Tokenizer.from_str(exact["backend"])
    return Tokenizer(
        backend, name=path, specials={k: int(v) for k, v in exact["specials"].items()},
        special_ids=frozenset(int(i) for i in exact["special_ids"]),
        vocab_size=int(exact["vocab_size"]),
        word_mode=_WORDS_JIEBA if segmenter is not None else str(exact["word_mode"]),
        segmenter=segmenter, cleanup_spaces=bool(exact["cleanup_spaces"]),
        copy_from=(path, str(exact["tokenizer_class"])))
  except Exception:  # noqa: BLE001 - a malformed cache falls back to the HF files
    return _load_hf_dir(path, segmenter)


def _load_hf_dir(path: str, segmenter: chinese.JiebaSegmenter | None) -> Tokenizer:
  from transformers import AutoTokenizer  # pylint: disable=import-outside-toplevel
  _check_json_files(path)
  try:
    hf = AutoTokenizer.from_pretrained(path)
  except Exception as e:  # pylint: disable=broad-except  # any failure here is the dir's
    model_type = _bad_config_model_type(path)
    if model_type is not None:  # transformers reads the model's config.json too
      raise ClowlabError(
          f"clowlab: transformers could not load the tokenizer in {path} ({e}): its config.json "
          f"has model_type={model_type}, which is not a model type name. Fix model_type in "
          f"{os.path.join(path, 'config.json')} (save_pretrained() writes a valid one).") from e
    raise ClowlabError(
        f"clowlab: transformers could not load the tokenizer in {path} ({e}). "
        "Check that the dir holds a complete HF tokenizer (tokenizer.json or vocab files plus "
        "tokenizer_config.json).") from e
  if not getattr(hf, "is_fast", False):
    raise ClowlabError(
        f"clowlab: the tokenizer in {path} loads only as a slow (Python) tokenizer "
        f"({type(hf).__name__}). Add a tokenizer.json (e.g. save it once with a fast tokenizer).")
  backend = hf_tokenizers.Tokenizer.from_str(hf.backend_tokenizer.to_str())
  backend.no_padding()
  backend.no_truncation()
  specials = {
      "pad": hf.pad_token_id,
      "cls": hf.cls_token_id if hf.cls_token_id is not None else hf.bos_token_id,
      "sep": hf.sep_token_id if hf.sep_token_id is not None else hf.eos_token_id,
      "mask": hf.mask_token_id,
      "unk": hf.unk_token_id,
  }
  missing = [k for k, v in specials.items() if v is None]
  if missing:
    keys = ", ".join(k + "_token" for k in missing)
    raise ClowlabError(
        f"clowlab: the tokenizer in {path} defines no {'/'.join(missing)} token. Add {keys} to "
        f"{os.path.join(path, 'tokenizer_config.json')} or use an encoder tokenizer that has them.")
  special_ids = frozenset(hf.all_special_ids) | frozenset(specials.values())
  if len(hf) <= len(special_ids):
    # transformers 5.x builds a specials-only tokenizer from a tokenizer_config.json alone.
    raise ClowlabError(
        f"clowlab: the tokenizer in {path} has no vocabulary, only its {len(hf)} special tokens "
        f"(files there: {', '.join(sorted(os.listdir(path)))}). Copy the model's tokenizer.json "
        "(or its vocab.txt / sentencepiece model) into the dir.")
  cleanup = bool(getattr(hf, "clean_up_tokenization_spaces", False)) and (
      type(backend.model).__name__ != "BPE")  # transformers skips the cleanup for BPE too
  word_mode = _WORDS_METASPACE if _uses_metaspace(backend) else _WORDS_PRETOKENIZER
  return Tokenizer(
      backend, name=path, specials=specials, special_ids=special_ids,
      vocab_size=max(len(hf), max(special_ids) + 1),
      word_mode=_WORDS_JIEBA if segmenter is not None else word_mode,
      segmenter=segmenter, cleanup_spaces=cleanup, copy_from=(path, type(hf).__name__))


def _copy_hf_files(src_dir: str, tokenizer_class: str, out_dir: str) -> None:
  for fname in _HF_TOKENIZER_FILES:
    src, dst = os.path.join(src_dir, fname), os.path.join(out_dir, fname)
    if os.path.isfile(src) and not (os.path.exists(dst) and os.path.samefile(src, dst)):
      shutil.copyfile(src, dst)
  # Without config.json AutoTokenizer needs tokenizer_class to pick the class.
  cfg_path = os.path.join(out_dir, "tokenizer_config.json")
  cfg: dict[str, Any] = {}
  if os.path.isfile(cfg_path):
    with open(cfg_path, encoding="utf-8") as f:
      cfg = json.load(f)
  if not cfg.get("tokenizer_class"):
    cfg["tokenizer_class"] = tokenizer_class
    with open(cfg_path, "w", encoding="utf-8") as f:
      json.dump(cfg, f, indent=2, ensure_ascii=False)


def _load_spm(model_path: str, segmenter: chinese.JiebaSegmenter | None) -> Tokenizer:
  """Converts a sentencepiece model to a fast tokenizer with the same ids as the .model."""
  from transformers.convert_slow_tokenizer import (  # pylint: disable=import-outside-toplevel
      SentencePieceExtractor, SpmConverter)
  try:
    proto = SentencePieceExtractor(model_path).proto
  except Exception as e:  # protobuf raises its own DecodeError
    raise ClowlabError(
        f"clowlab: {model_path} is not a readable sentencepiece model ({e}). "
        "Point the tokenizer path at a .model file written by sentencepiece.") from e
  model_type = proto.trainer_spec.model_type  # 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR
  if model_type not in (1, 2):
    raise ClowlabError(
        f"clowlab: {model_path} is a sentencepiece word/char model (model_type={model_type}); only "
        "unigram and bpe models are supported. Train one with python -m clowlab.data.train_spm.")
  # Unigram takes (piece, score) pairs; BPE a piece -> id map (merges come from the scores).
  vocab: Any = ([(p.piece, p.score) for p in proto.pieces] if model_type == 1
                else {p.piece: i for i, p in enumerate(proto.pieces)})
  backend = SpmConverter.build_tokenizer_from_spm_proto(proto=proto, vocab=vocab)

  tokens = _spm_special_tokens(proto)
  control = [p.piece for p in proto.pieces if p.type in (2, 3)]  # UNKNOWN, CONTROL pieces
  special_tokens = list(dict.fromkeys(control + list(tokens.values())))
  # Tokens the .model lacks (e.g. <pad>, <mask>) are appended after its pieces.
  backend.add_special_tokens([hf_tokenizers.AddedToken(t, special=True, normalized=False)
                              for t in special_tokens])
  specials = {k: backend.token_to_id(t) for k, t in tokens.items()}
  cls, sep = tokens["cls"], tokens["sep"]
  if cls == "[CLS]":
    pair = f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1"
  else:  # XLM-R / RoBERTa style, single token type
    pair = f"{cls} $A {sep} {sep} $B {sep}"
  backend.post_processor = hf_tokenizers.processors.TemplateProcessing(
      single=f"{cls} $A {sep}", pair=pair,
      special_tokens=[(cls, specials["cls"]), (sep, specials["sep"])])

  special_ids = frozenset(backend.token_to_id(t) for t in special_tokens)
  token_cfg = {"bos_token": cls, "eos_token": sep, "unk_token": tokens["unk"],
               "sep_token": sep, "pad_token": tokens["pad"], "cls_token": cls,
               "mask_token": tokens["mask"]}
  tokenizer_config = {
      # The generic class loads tokenizer.json verbatim; model classes (e.g. XLMRobertaTokenizer)
      # rebuild the pipeline in transformers 5.x and would not match the .model.
      "tokenizer_class": "PreTrainedTokenizerFast",
      **token_cfg,
      "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
      "clean_up_tokenization_spaces": False,
  }
  return Tokenizer(
      backend, name=model_path, specials=specials, special_ids=special_ids,
      vocab_size=backend.get_vocab_size(with_added_tokens=True),
      word_mode=_WORDS_JIEBA if segmenter is not None else _WORDS_METASPACE,
      segmenter=segmenter, cleanup_spaces=False,
      configs={"tokenizer_config.json": tokenizer_config, "special_tokens_map.json": token_cfg})


def _spm_special_tokens(proto: Any) -> dict[str, str]:
  """Token strings for unk/cls/sep/pad/mask: the model's own pieces, else XLM-R style additions."""
  spec = proto.trainer_spec
  pieces = {p.piece for p in proto.pieces}

  def own(i: int) -> str | None:  # the piece sentencepiece reserved at id i (-1: disabled)
    return proto.pieces[i].piece if 0 <= i < len(proto.pieces) else None

  def first(*candidates: str | None) -> str | None:
    return next((c for c in candidates if c and c in pieces), None)

  return {
      "unk": own(spec.unk_id) or "<unk>",
      "cls": first("[CLS]", own(spec.bos_id), "<s>") or "<s>",
      "sep": first("[SEP]", own(spec.eos_id), "</s>") or "</s>",
      "pad": first(own(spec.pad_id), "<pad>", "[PAD]") or "<pad>",
      "mask": first("<mask>", "[MASK]") or "<mask>",
  }


def check_vocab_matches(tokenizer: Tokenizer, model_vocab_size: int, model_source: str) -> None:
  """Raises ClowlabError when the model's embedding rows and the tokenizer's ids disagree."""
  if int(model_vocab_size) != tokenizer.vocab_size:
    fix = "Point the model and the tokenizer at the same model directory."
    if model_source == "config.model":
      fix = (f"Leave --config.model.vocab_size unset (it follows the tokenizer) or set it to "
             f"{tokenizer.vocab_size}.")
    elif os.path.isdir(model_source) and set(os.listdir(model_source)) & set(_HF_MARKERS):
      # The model dir's own tokenizer (e.g. init_from, whose tokenizer a run copies).
      fix = (f"The tokenizer files in {model_source} do not belong to its weights: copy in the "
             "tokenizer the model was saved with, or set --config.tokenizer to it.")
    raise ClowlabError(
        f"clowlab: {model_source} says vocab_size={model_vocab_size} but the tokenizer in "
        f"{tokenizer.name} has {tokenizer.vocab_size} tokens. {fix}")
