"""Docs generated from the code stay true to it, and the docs' links resolve."""
import re
import subprocess
import sys

import pytest

from tiny import REPO

# Pages other changes are writing; a link to one of them is checked once the page exists.
def _run_tool(name):
  return subprocess.run([sys.executable, f"docs/tools/{name}", "--check"], cwd=str(REPO),
                        capture_output=True, text=True, timeout=300)


def test_troubleshooting_page_lists_every_error():
  """docs/troubleshooting.md == what docs/tools/make_troubleshooting.py reads from clowlab/."""
  r = _run_tool("make_troubleshooting.py")
  assert r.returncode == 0, r.stderr
  text = (REPO / "docs" / "troubleshooting.md").read_text()
  assert "saving checkpoint step <step>" in text and "## `clowlab/config_check.py`" in text


def test_configs_reference_matches_the_configs():
  """docs/configs.md == what docs/tools/make_configs_reference.py builds from configs/*.py
  (every config, every variant, every key); regenerate it after changing a config."""
  r = _run_tool("make_configs_reference.py")
  assert r.returncode == 0, r.stderr
  text = (REPO / "docs" / "configs.md").read_text()
  from clowlab import methods  # noqa: PLC0415
  for name in methods.METHODS:
    assert f"## `configs/{name}.py`" in text, name
  assert "| `infoxlm.queue_size` | `131072` | `256` |" in text
  assert "| `model.scan_layers` | `True` |" in text  # the EncoderConfig defaults table


def test_conversion_name_tables_match_the_code():
  """The tensor-name tables in docs/conversion.md == clowlab/convert/hf.py's mapping."""
  r = _run_tool("make_conversion_table.py")
  assert r.returncode == 0, r.stderr
  text = (REPO / "docs" / "conversion.md").read_text()
  assert "| `encoder.layer.{i}.attention.self.query.weight` | `encoder/layers/attn/q/kernel[i]` " \
         "| yes |" in text


def test_sharding_page_names_every_param_rule():
  from clowlab import sharding  # noqa: PLC0415
  text = (REPO / "docs" / "sharding.md").read_text().replace("\\|", "|")  # table escapes
  for pattern, spec in sharding.PARAM_RULES:
    assert f"`{pattern}`" in text and f"`{spec}`" in text, (pattern, spec)


def _slug(heading: str) -> str:
  """GitHub's anchor for a markdown heading."""
  s = heading.strip().lower()
  s = re.sub(r"[^\w\- ]", "", s)
  return s.replace(" ", "-")


def _anchors(path) -> set[str]:
  out, seen = set(), {}
  in_code = False
  for line in path.read_text(encoding="utf-8").splitlines():
    if line.startswith("```"):
      in_code = not in_code
    m = re.match(r"#+ (.*)", line)
    if m and not in_code:
      slug = _slug(m.group(1))
      n = seen.get(slug, 0)
      seen[slug] = n + 1
      out.add(slug if n == 0 else f"{slug}-{n}")
  return out


PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"),
                *(REPO / "docs" / "methods").glob("*.md")])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page):
  """Every relative link of README.md, docs/*.md and docs/methods/*.md names an existing file
  (and, with #anchor, a heading of that markdown file)."""
  text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
  bad = []
  for target in re.findall(r"\]\(([^)\s]+)\)", text):
    if re.match(r"[a-z]+:", target):
      continue
    file, _, anchor = target.partition("#")
    dest = (page.parent / file).resolve() if file else page
    rel = dest.relative_to(REPO).as_posix() if dest.is_relative_to(REPO) else str(dest)
    if not dest.exists():
      bad.append(f"{target}: no {rel}")
      continue
    if anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
      bad.append(f"{target}: no heading #{anchor} in {rel}")
  assert not bad, "\n".join(bad)


def test_regenerate_covers_every_generator():
  """docs/tools/regenerate.py (the one command that rewrites every generated file) runs every
  page generator there is."""
  import importlib.util  # noqa: PLC0415
  spec = importlib.util.spec_from_file_location("regenerate", REPO / "docs/tools/regenerate.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  generators = {str(p.relative_to(REPO)) for d in ("docs/tools", "docs/notebooks")
                for p in (REPO / d).glob("make_*.py")}
  assert generators == set(mod.PAGES)
