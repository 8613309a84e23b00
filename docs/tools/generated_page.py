"""The one write-or-check step of the docs generators (make_*.py in this directory)."""
import pathlib
import sys


def write_or_check(page: pathlib.Path, text: str, script: str) -> int:
  """--check: exit status 1 (and say which script to run) when `page` differs from `text`;
  otherwise write it. Tests run every generator with --check, so a stale page fails CI."""
  if "--check" in sys.argv:
    if not page.exists() or page.read_text(encoding="utf-8") != text:
      print(f"{page} is stale: run python docs/tools/{script}", file=sys.stderr)
      return 1
    return 0
  page.write_text(text, encoding="utf-8")
  print(f"wrote {page}")
  return 0
