"""Writes the tensor-name tables of docs/conversion.md from clowlab/convert/hf.py's mapping.

    python docs/tools/make_conversion_table.py          # rewrite the tables in the page
    python docs/tools/make_conversion_table.py --check  # exit 1 if they are stale (a test runs this)

The tables sit between `<!-- names:begin -->` and `<!-- names:end -->` in docs/conversion.md;
the rest of the page is written by hand. They come from `hf._hf_names` (the encoder) and
`hf._mlm_names` (the MLM head of each model type), the same tables import and export use.
"""
from __future__ import annotations

import pathlib
import re
import sys

import generated_page  # docs/tools/: the shared write-or-check step

REPO = pathlib.Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "conversion.md"
BEGIN, END = "<!-- names:begin -->", "<!-- names:end -->"


def tables() -> str:
  from clowlab.convert import hf  # noqa: PLC0415
  from clowlab.models import encoder as enc  # noqa: PLC0415
  cfg = enc.EncoderConfig(vocab_size=8, hidden_size=4, num_layers=1, num_heads=1,
                          intermediate_size=8, max_position_embeddings=8)
  lines = ["Encoder (`hf._hf_names`; `{i}` is the layer index, 0 … num_hidden_layers − 1; "
           "clowlab stacks the layers, so layer i is row i of the stacked array):", "",
           "| HF tensor (`BertModel` / `RobertaModel` / `XLMRobertaModel` naming) | clowlab "
           "params path | transposed |", "|---|---|---|"]
  for name, (path, is_linear) in hf._hf_names(cfg).items():  # noqa: SLF001
    if isinstance(path[-1], int):
      name = re.sub(r"\.0\.", ".{i}.", name)
      where = "encoder/" + "/".join(path[:-1]) + "[i]"
    else:
      where = "encoder/" + "/".join(path)
    lines.append(f"| `{name}` | `{where}` | {'yes' if is_linear else ''} |")
  for model_type in ("bert", "roberta"):
    kinds = "BERT" if model_type == "bert" else "RoBERTa and XLM-R"
    lines += ["", f"MLM head, {kinds} (`hf._mlm_names(\"{model_type}\")`; the decoder weight is "
              "the word embedding matrix, tied, so it is neither read nor written):", "",
              "| HF tensor | clowlab params path | transposed |", "|---|---|---|"]
    for name, (path, is_linear) in hf._mlm_names(model_type).items():  # noqa: SLF001
      lines.append(f"| `{name}` | `mlm_head/{'/'.join(path)}` | {'yes' if is_linear else ''} |")
  return "\n".join(lines)


def render(text: str) -> str:
  if BEGIN not in text or END not in text:
    raise SystemExit(f"{PAGE} lacks the {BEGIN} ... {END} markers")
  head, rest = text.split(BEGIN, 1)
  _, tail = rest.split(END, 1)
  return f"{head}{BEGIN}\n{tables()}\n{END}{tail}"


def main() -> int:
  return generated_page.write_or_check(PAGE, render(PAGE.read_text(encoding="utf-8")),
                                       "make_conversion_table.py")


if __name__ == "__main__":
  sys.exit(main())
