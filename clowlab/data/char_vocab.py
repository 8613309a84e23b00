"""A character-level Chinese BERT tokenizer (bert-base-chinese style) built from a corpus.

    build_char_tokenizer(["zh.txt.gz"], "workdir/tokenizer", vocab_size=8000)
    # or in a config: c.tokenizer = "chars:8000"

vocab.txt: [PAD] [UNK] [CLS] [SEP] [MASK], then the corpus's characters by descending
frequency (ties by code point), counted after the tokenizer's own normalisation (lowercase,
accents stripped, CJK ideographs split into one-character words). A character seen inside a
word (always a non-CJK one, e.g. the "p" of "iphone") also gets its "##c" continuation form,
counted separately, so ASCII words split into characters instead of becoming [UNK].
The directory loads with `transformers.AutoTokenizer.from_pretrained(out_dir)` and
`clowlab.data.tokenizers.load_tokenizer(out_dir)` (jieba word_ids work as for bert-base-chinese).
"""
from __future__ import annotations

import collections
import itertools
import json
import os
from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from clowlab.data import train_spm
from clowlab.errors import ClowlabError

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_SPECIAL_KEYS = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")


def _normalizer():
  # strip_accents=None follows lowercase, as in bert-base-chinese (do_lower_case=True).
  return normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                    strip_accents=None, lowercase=True)


def count_chars(files: Sequence[str]) -> collections.Counter:
  """Word-initial characters as "c", later ones as "##c", after normalisation/pre-tokenisation."""
  norm, pre = _normalizer(), pre_tokenizers.BertPreTokenizer()
  counts: collections.Counter = collections.Counter()
  lines = train_spm.iter_lines(files)
  # Lines joined by "\n" pre-tokenize as they would one by one, with less per-call overhead.
  while chunk := list(itertools.islice(lines, 1000)):
    words = [w for w, _ in pre.pre_tokenize_str(norm.normalize_str("\n".join(chunk)))]
    counts.update(w[0] for w in words)
    counts.update("##" + c for w in words for c in w[1:])
  return counts


def vocab_from_counts(counts: collections.Counter, vocab_size: int,
                      min_count: int = 1) -> list[str]:
  """Specials, then tokens by descending count, ties by code point (a char before its ##form)."""
  kept = [t for t, n in counts.items() if n >= min_count]
  kept.sort(key=lambda t: (-counts[t], t.removeprefix("##"), t.startswith("##")))
  return list(SPECIALS) + kept[:vocab_size - len(SPECIALS)]


def build_char_tokenizer(files: Sequence[str], out_dir: str, vocab_size: int,
                         min_count: int = 1) -> str:
  """Counts `files` (plain text or .gz, one text per line) and writes the tokenizer to out_dir:
  vocab.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json. Returns out_dir."""
  from transformers import BertTokenizerFast  # noqa: PLC0415  # slow import, only when building
  if vocab_size <= len(SPECIALS):
    raise ClowlabError(f"clowlab: char vocab_size={vocab_size} leaves no room for characters "
                       f"after the {len(SPECIALS)} special tokens. Use e.g. 'chars:8000'.")
  files = train_spm.check_inputs(list(files))
  vocab = vocab_from_counts(count_chars(files), vocab_size, min_count)
  if len(vocab) == len(SPECIALS):
    raise ClowlabError(f"clowlab: no character occurs {min_count}+ times in {', '.join(files)}. "
                       "Point the tokenizer at the training text, or lower min_count.")
  ids = {t: i for i, t in enumerate(vocab)}
  tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
  tok.normalizer = _normalizer()
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
      special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
  tok.decoder = decoders.WordPiece()
  specials = dict(zip(_SPECIAL_KEYS, SPECIALS))
  hf = BertTokenizerFast(tokenizer_object=tok, do_lower_case=True, tokenize_chinese_chars=True,
                         strip_accents=None, **specials)
  os.makedirs(out_dir, exist_ok=True)
  hf.save_pretrained(out_dir)
  # transformers 5 writes only tokenizer.json + tokenizer_config.json; the other two are for
  # tools that read BERT vocab files directly.
  with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8") as f:
    f.writelines(t + "\n" for t in vocab)
  with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
    json.dump(specials, f, indent=2)
  return out_dir
