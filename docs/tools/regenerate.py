"""Regenerates every generated file of the repository, or checks that none is stale.

    python docs/tools/regenerate.py            # rewrite them all
    python docs/tools/regenerate.py --check    # exit 1 naming each stale one (no writes)

The generated files, each from the code it describes:
  clowlab/config_schema.json        python -m clowlab.config_check          (configs/*.py)
  docs/configs.md                   docs/tools/make_configs_reference.py    (configs/*.py)
  docs/troubleshooting.md           docs/tools/make_troubleshooting.py      (clowlab/ errors)
  docs/conversion.md (name tables)  docs/tools/make_conversion_table.py     (convert/hf.py)
  docs/notebooks/*.ipynb            docs/notebooks/make_notebooks.py
  tests/golden/*.json               tests/test_golden.py with CLOWLAB_UPDATE_GOLDEN=1 (every
                                    registered method: first two steps, train-state shardings;
                                    minutes on a CPU, so only without --check)
Tests run each generator's check, so a stale file fails CI; after adding a method or a config
key, run this once and review `git diff`.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
PAGES = ("docs/tools/make_configs_reference.py", "docs/tools/make_troubleshooting.py",
         "docs/tools/make_conversion_table.py", "docs/notebooks/make_notebooks.py")


def _run(args: list[str], env: dict | None = None) -> int:
  print("$", " ".join(args), flush=True)
  return subprocess.run(args, cwd=REPO, env={**os.environ, **(env or {})}).returncode


def main(argv: list[str]) -> int:
  check = "--check" in argv
  py = sys.executable
  failed = []
  if check:
    # The schema: rebuilt from configs/ and compared (tests/test_fuzz_config.py does the same).
    code = ("import sys; from clowlab import config_check; "
            "sys.exit(config_check.build_schema('configs') != config_check.load_schema())")
    if _run([py, "-c", code]):
      failed.append("clowlab/config_schema.json (run python -m clowlab.config_check configs)")
  elif _run([py, "-m", "clowlab.config_check", "configs"]):
    failed.append("clowlab/config_schema.json")
  for page in PAGES:
    if _run([py, page] + (["--check"] if check else [])):
      failed.append(page)
  if not check and _run([py, "-m", "pytest", "-q", "tests/test_golden.py"],
                        env={"CLOWLAB_UPDATE_GOLDEN": "1"}):
    failed.append("tests/golden (tests/test_golden.py)")
  if failed:
    print(("stale: " if check else "failed: ") + "; ".join(failed), file=sys.stderr)
    return 1
  print("all generated files are current" if check else "regenerated; review `git diff`")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
