"""Docs generated from the code stay true to it."""
import subprocess
import sys

from tiny import REPO


def test_troubleshooting_page_lists_every_error():
  """docs/troubleshooting.md == what docs/tools/make_troubleshooting.py reads from clowlab/."""
  r = subprocess.run([sys.executable, "docs/tools/make_troubleshooting.py", "--check"],
                     cwd=str(REPO), capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  text = (REPO / "docs" / "troubleshooting.md").read_text()
  assert "saving checkpoint step <step>" in text and "## `clowlab/config_check.py`" in text
