"""The Colab demos in docs/notebooks: committed files match their generator, and each notebook
runs headless to the end with its smallest settings (CLOWLAB_NOTEBOOK_SMOKE=1) and shows what it
promises (finite metrics, plots, the exported HF model loaded)."""
import json
import math
import os
import pathlib
import resource
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = pathlib.Path(__file__).resolve().parents[1]
NB_DIR = REPO / "docs" / "notebooks"
sys.path.insert(0, str(NB_DIR))
import make_notebooks  # noqa: E402

CELL_TIMEOUT_S = 300  # one training run in smoke mode takes well under a minute


def test_committed_notebooks_match_the_generator():
  for name in make_notebooks.NOTEBOOKS:
    path = NB_DIR / f"{name}.ipynb"
    assert path.exists(), f"{path} missing: run python docs/notebooks/make_notebooks.py"
    assert make_notebooks.is_current(name), (
        f"{path.name} differs from make_notebooks.py: edit the generator and rerun it")
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
      if cell.cell_type == "code":
        assert not cell.outputs and cell.execution_count is None, f"{path.name}: outputs kept"


def test_generator_check_mode_flags_a_stale_notebook(tmp_path, monkeypatch):
  monkeypatch.setattr(make_notebooks, "HERE", tmp_path)
  assert make_notebooks.main(["--check"]) == 1  # nothing written yet
  assert make_notebooks.main([]) == 0
  assert make_notebooks.main(["--check"]) == 0
  nb = json.loads((tmp_path / "coco_lm.ipynb").read_text(encoding="utf-8"))
  nb["cells"][0]["source"][0] = "# edited in Jupyter\n"
  (tmp_path / "coco_lm.ipynb").write_text(json.dumps(nb), encoding="utf-8")
  assert make_notebooks.main(["--check"]) == 1
  nb["cells"][0]["source"][0] = make_notebooks.build("coco_lm").cells[0].source.splitlines(True)[0]
  (tmp_path / "coco_lm.ipynb").write_text(json.dumps(nb, indent=4), encoding="utf-8")
  assert make_notebooks.main(["--check"]) == 0  # formatting alone is no difference


@pytest.fixture(scope="session")
def jax_cache(tmp_path_factory):
  return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture
def kernel_env(tmp_path, monkeypatch, jax_cache):
  """A kernel spec that runs this interpreter (the venv's, whatever `python3` kernels the machine
  has elsewhere), and the environment the kernel starts with."""
  spec = tmp_path / "jupyter" / "kernels" / "clowlab-test"
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "clowlab test", "language": "python"}))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
  monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
  env = dict(os.environ)
  # conftest forces 8 fake CPU devices; the notebooks run on one here (8-way steps cost the 2
  # shared cores more). Their device-count rounding is checked on 3 devices below.
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  # Smoke runs are a few steps of several small programs each: XLA:CPU's optimisation passes
  # cost more than they save (compile time about halves).
  flags += ["--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"]
  env.update(XLA_FLAGS=" ".join(flags), JAX_PLATFORMS="cpu", CLOWLAB_NOTEBOOK_SMOKE="1",
             # Identical programs (a run's evaluator and the same model's evaluation after it,
             # the same-size encoders' initialisers) compile once per test session.
             JAX_COMPILATION_CACHE_DIR=str(jax_cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             CLOWLAB_NOTEBOOK_RUNS=str(tmp_path / "runs"),
             PYTHONWARNINGS="ignore::DeprecationWarning")
  env.pop("CLOWLAB_SOURCE", None)
  return env


def children_cpu_s():
  r = resource.getrusage(resource.RUSAGE_CHILDREN)
  return r.ru_utime + r.ru_stime


def execute(nb, env, cwd):
  """Runs every cell; returns (wall seconds, CPU seconds of the kernel and its children)."""
  client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="clowlab-test",
                                   resources={"metadata": {"path": str(cwd)}})
  t0, c0 = time.perf_counter(), children_cpu_s()
  try:
    client.execute(env=env)
  except nbclient.exceptions.CellExecutionError as e:
    pytest.fail(f"notebook cell failed:\n{str(e)[-4000:]}")
  return time.perf_counter() - t0, children_cpu_s() - c0  # the kernel has exited, been reaped


def stdout_of(cell):
  return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"
                 and o.name == "stdout")


def summary_of(nb):
  cells = [c for c in nb.cells if "summary" in c.metadata.get("tags", [])]
  assert len(cells) == 1
  return json.loads(stdout_of(cells[0]))


def n_images(nb):
  return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
             for o in c.outputs)


def finite(*xs):
  return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(make_notebooks.NOTEBOOKS))
def test_notebook_runs_headless(name, kernel_env, tmp_path, capsys):
  if name == "clower":
    pytest.importorskip("torch")  # it loads the export with transformers' PyTorch BertModel
  nb = make_notebooks.build(name)
  wall, cpu = execute(nb, kernel_env, tmp_path)
  with capsys.disabled():  # the CI log's record of each notebook's cost
    print(f"\n[notebook {name}: {wall:.1f} s wall, {cpu:.1f} CPU-s in smoke mode, load average "
          f"{os.getloadavg()[0]:.1f}]")
  s = summary_of(nb)
  assert s["notebook"] == name and s["smoke"] is True and s["devices"] == 1
  # Every notebook ends with clowlab.report's plots plus its own figures.
  assert n_images(nb) >= 3, n_images(nb)
  report_md = "".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells
                      for o in getattr(c, "outputs", []))
  assert "| run |" in report_md  # clowlab.report's comparison table
  if name == "sentence_embeddings":
    assert set(s["sts_spearman"]) == {"SimCSE", "layer attention", "SimCSE + BERT-flow"}
    assert finite(*s["sts_spearman"].values(), s["search_top1"])
    assert all(-100 <= v <= 100 for v in s["sts_spearman"].values())
  elif name == "coco_lm":
    assert set(s["dev_spearman"]) == {"COCO-LM", "MLM"} and s["regression"] is True
    assert all(finite(v) and -100 <= v <= 100 for v in s["dev_spearman"].values())
    assert {"binary_loss", "clm_loss", "scl_loss"} <= set(s["coco_loss_terms"])
  elif name == "infoxlm":
    accs = [v for r in s["retrieval"].values() for v in r.values()]
    assert len(accs) == 4 and all(finite(a) and 0 <= a <= 100 for a in accs)
    assert {"mmlm_loss", "tlm_loss", "xlco_loss"} <= set(s["loss_terms"])
  elif name == "clower":
    assert finite(*s["sts_spearman"].values()) and len(s["sts_spearman"]) == 2
    assert s["hf_model"] == "BertModel" and s["hf_max_diff"] < 1e-3


def test_batch_sizes_follow_the_device_count(kernel_env, tmp_path):
  """Every global batch a notebook sets splits evenly over the devices. Three fake devices (no
  runlocal size divides by 3, unlike 1 or 8) show the rounding is real; the set-up and settings
  cells run, the training cells do not."""
  env = dict(kernel_env, XLA_FLAGS=(kernel_env["XLA_FLAGS"]
                                    + " --xla_force_host_platform_device_count=3").strip())
  nb = nbformat.v4.new_notebook()
  show = ("print(json.dumps({k: globals().pop(k) for k in ('BATCH', 'FLOW_BATCH', 'FT_BATCH', "
          "'PAIR_BATCH', 'QUEUE') if k in globals()}))")
  for name in make_notebooks.NOTEBOOKS:
    cells = make_notebooks.build(name).cells
    settings = next(i for i, c in enumerate(cells) if "per_devices(" in c.source
                    and "def per_devices" not in c.source)
    nb.cells += [c for c in cells[:settings + 1] if c.cell_type == "code"]
    nb.cells.append(nbformat.v4.new_code_cell(show))
  execute(nb, env, tmp_path)
  sizes = [json.loads(stdout_of(c).strip().splitlines()[-1]) for c in nb.cells if c.source == show]
  assert [bool(s) for s in sizes] == [True] * len(make_notebooks.NOTEBOOKS), sizes
  for s in sizes:
    assert all(v > 0 and v % 3 == 0 for v in s.values()), s
    if "QUEUE" in s:
      assert s["QUEUE"] % s["PAIR_BATCH"] == 0, s
