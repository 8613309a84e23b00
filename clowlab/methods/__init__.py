"""Registry of methods, the one list of method names: every `Method` defined at the top level
of a module in this package, found by name (a new method is its own file, nothing else here).
`get(name)` fails listing the valid names."""
from __future__ import annotations

import importlib
import pkgutil

from clowlab.errors import ClowlabError
from clowlab.methods.base import DataContext, Method


def _discover() -> dict[str, Method]:
  found: dict[str, Method] = {}
  for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    module = importlib.import_module(f"{__name__}.{info.name}")
    for value in vars(module).values():
      if isinstance(value, Method) and found.setdefault(value.name, value) is not value:
        raise ClowlabError(f"clowlab: two methods are named {value.name!r} (one in "
                           f"clowlab/methods/{info.name}.py); give each a name of its own.")
  return found


METHODS: dict[str, Method] = _discover()


def get(name: str) -> Method:
  if name not in METHODS:
    raise ClowlabError(f"clowlab: unknown method {name!r}; valid: {', '.join(sorted(METHODS))}.")
  return METHODS[name]


__all__ = ["METHODS", "DataContext", "Method", "get"]
