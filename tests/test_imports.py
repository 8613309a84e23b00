"""The import graph of clowlab/: no cycles, counting the imports inside functions too (they hide
a cycle from Python, not from the design)."""
import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]


def import_graph(root: pathlib.Path = REPO) -> dict[str, set[str]]:
  """{module: the clowlab modules it imports}, anywhere in its source, with the packages whose
  __init__ such an import runs. `from clowlab import x` counts as importing clowlab.x when that is
  a module, else the package."""
  files = {}
  for p in (root / "clowlab").rglob("*.py"):
    name = ".".join(p.relative_to(root).with_suffix("").parts)
    files[name.removesuffix(".__init__")] = p

  def known(name: str) -> str:
    while name not in files:
      name = name.rpartition(".")[0]
    return name

  def with_packages(importer: str, target: str) -> set[str]:
    # Importing a.b.c runs a/__init__ and a/b/__init__ first, except the packages the importer
    # itself lies in (they are already being imported when it runs).
    own = {importer.rsplit(".", i)[0] for i in range(importer.count(".") + 1)}
    parts = target.split(".")
    return {".".join(parts[:i]) for i in range(2, len(parts) + 1)} - own

  graph = {m: set() for m in files}
  for m, p in files.items():
    pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
    for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
      if isinstance(node, ast.Import):
        graph[m] |= {known(a.name) for a in node.names if a.name.startswith("clowlab")}
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          parts = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
          base = ".".join(parts + ([base] if base else []))
        if base.startswith("clowlab"):
          graph[m] |= {known(f"{base}.{a.name}") for a in node.names}
    graph[m] = set().union(*(with_packages(m, t) for t in graph[m])) - {m}
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_no_import_cycle_inside_clowlab():
  found = cycles(import_graph())
  assert not found, "import cycles (a module set that imports itself round): " + "; ".join(
      " <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_hidden_cycle(tmp_path):
  """A cycle through an import inside a function is found (and a plain chain is not)."""
  pkg = tmp_path / "clowlab"
  pkg.mkdir()
  (pkg / "__init__.py").write_text("")
  (pkg / "a.py").write_text("from clowlab import b\n")
  (pkg / "b.py").write_text("def f():\n  from clowlab.c import g\n")
  (pkg / "c.py").write_text("import os\n")
  assert cycles(import_graph(tmp_path)) == []
  (pkg / "c.py").write_text("def g():\n  from . import a\n")
  assert cycles(import_graph(tmp_path)) == [["clowlab.a", "clowlab.b", "clowlab.c"]]


def test_a_cycle_through_a_package_init_is_found(tmp_path):
  """clowlab.x imports clowlab.sub.y, whose package __init__ imports clowlab.sub.z, which
  imports clowlab.x: Python fails on it at import time, so the finder must see it."""
  pkg = tmp_path / "clowlab"
  (pkg / "sub").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "x.py").write_text("from clowlab.sub import y\n")
  (pkg / "sub" / "__init__.py").write_text("from clowlab.sub import z\n")
  (pkg / "sub" / "y.py").write_text("")
  (pkg / "sub" / "z.py").write_text("import os\n")
  assert cycles(import_graph(tmp_path)) == []
  (pkg / "sub" / "z.py").write_text("from clowlab import x\n")
  assert cycles(import_graph(tmp_path)) == [["clowlab.sub", "clowlab.sub.z", "clowlab.x"]]
