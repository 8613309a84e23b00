"""Registry of methods: `get(name)` fails listing the valid names."""
from __future__ import annotations

from clowlab.errors import ClowlabError
from clowlab.methods import bert_flow, clower, coco_lm, infoxlm, layer_attention, mlm, simcse
from clowlab.methods.base import DataContext, Method

METHODS: dict[str, Method] = {m.name: m for m in (mlm.METHOD, simcse.METHOD,
                                                  layer_attention.METHOD, bert_flow.METHOD,
                                                  coco_lm.METHOD, coco_lm.ELECTRA,
                                                  infoxlm.METHOD, clower.METHOD)}


def get(name: str) -> Method:
  if name not in METHODS:
    raise ClowlabError(f"clowlab: unknown method {name!r}; valid: {', '.join(sorted(METHODS))}.")
  return METHODS[name]


__all__ = ["METHODS", "DataContext", "Method", "get"]
