"""Trains a sentencepiece model for from-scratch encoders.

  python -m clowlab.data.train_spm --input=a.txt,b.txt.gz --model_prefix=out/spm \
      --vocab_size=32000 --model_type=unigram

Reads plain-text and gzipped files (one sentence/paragraph per line; empty lines skipped) and
reserves the encoder's special tokens with XLM-R-like ids: <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4.
Writes OUT.model and OUT.vocab; `clowlab.data.tokenizers.load_tokenizer(OUT.model)` loads it.
"""
from __future__ import annotations

import argparse
import gzip
import os
import sys
from collections.abc import Iterator, Sequence

from clowlab.errors import ClowlabError

SPECIAL_IDS = {"bos": ("<s>", 0), "pad": ("<pad>", 1), "eos": ("</s>", 2), "unk": ("<unk>", 3)}
MASK_TOKEN = "<mask>"  # a control symbol, so it gets the next id (4)
MODEL_TYPES = ("unigram", "bpe")


def _open_text(path: str):
  if path.endswith(".gz"):
    return gzip.open(path, "rt", encoding="utf-8", errors="replace")
  return open(path, encoding="utf-8", errors="replace")


def iter_lines(paths: Sequence[str]) -> Iterator[str]:
  """Non-empty lines of every file, in order, without their newline."""
  for path in paths:
    with _open_text(path) as f:
      for line in f:
        line = line.rstrip("\r\n")
        if line.strip():
          yield line


def check_inputs(paths: Sequence[str]) -> list[str]:
  paths = [p for p in paths if p]
  if not paths:
    raise ClowlabError("clowlab: --input is empty. Pass one or more text files, comma-separated.")
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise ClowlabError(
        f"clowlab: --input file(s) {', '.join(missing)} do not exist. "
        "Pass existing .txt or .gz files, comma-separated.")
  return paths


def train_spm(inputs: Sequence[str], model_prefix: str, vocab_size: int, *,
              model_type: str = "unigram", character_coverage: float = 0.9995,
              input_sentence_size: int = 0, max_sentence_length: int = 16384,
              num_threads: int | None = None, byte_fallback: bool = False) -> str:
  """Trains and writes `model_prefix`.model/.vocab; returns the .model path.

  input_sentence_size > 0 trains on that many randomly sampled lines (for big corpora).
  """
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  inputs = check_inputs(inputs)
  if model_type not in MODEL_TYPES:
    raise ClowlabError(
        f"clowlab: --model_type={model_type!r} is not supported. "
        f"Use one of {', '.join(MODEL_TYPES)}.")
  out_dir = os.path.dirname(os.path.abspath(model_prefix))
  os.makedirs(out_dir, exist_ok=True)
  kwargs = {f"{k}_{attr}": v for k, (piece, i) in SPECIAL_IDS.items()
            for attr, v in (("id", i), ("piece", piece))}
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter_lines(inputs),
        model_prefix=model_prefix,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        input_sentence_size=input_sentence_size,
        shuffle_input_sentence=True,
        max_sentence_length=max_sentence_length,
        num_threads=num_threads or os.cpu_count() or 1,
        byte_fallback=byte_fallback,
        control_symbols=[MASK_TOKEN],
        minloglevel=1,
        **kwargs)
  except RuntimeError as e:
    raise ClowlabError(
        f"clowlab: sentencepiece training on {', '.join(inputs)} failed: {str(e).rstrip('.')}. "
        "Fix the flags it names (often: raise --vocab_size, lower --character_coverage, or add "
        "more text).") from e
  return model_prefix + ".model"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m clowlab.data.train_spm", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--input", required=True, help="comma-separated .txt / .gz files")
  p.add_argument("--model_prefix", required=True, help="writes PREFIX.model and PREFIX.vocab")
  p.add_argument("--vocab_size", type=int, required=True, help="incl. the 5 special tokens")
  p.add_argument("--model_type", choices=MODEL_TYPES, default="unigram")
  p.add_argument("--character_coverage", type=float, default=0.9995)
  p.add_argument("--input_sentence_size", type=int, default=0,
                 help="train on this many sampled lines; 0: all")
  p.add_argument("--max_sentence_length", type=int, default=16384,
                 help="lines longer than this many bytes are skipped")
  p.add_argument("--num_threads", type=int, default=None)
  p.add_argument("--byte_fallback", action="store_true")
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  args = _parse(argv)
  try:
    path = train_spm(
        args.input.split(","), args.model_prefix, args.vocab_size, model_type=args.model_type,
        character_coverage=args.character_coverage, input_sentence_size=args.input_sentence_size,
        max_sentence_length=args.max_sentence_length, num_threads=args.num_threads,
        byte_fallback=args.byte_fallback)
  except ClowlabError as e:
    print(e, file=sys.stderr)
    return 2
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
