"""Evaluators chosen by config (big_vision's `config.evals`): named entries, each with a `type`
from EVALUATORS and that type's keys, e.g.

    config.evals = {"stsb_dev": {"type": "sts", "sets": [{"name": "stsb_dev", "path": ...,
                                                          "columns": [0, 1, 2]}]},
                    "heldout": {"type": "mlm", "files": ["valid.txt"]}}

An empty `config.evals` runs the method's own entries (`Method.evals`, built from its config's
`eval.*` / `data.eval` keys). A method supplies how it embeds (`Method.embed`) and its MLM head
(`Method.mlm_eval`); the evaluators here do the rest, so no method evaluates through another.
The in-training evaluation and `config.mode=eval` go through `evaluate()`; the evaluate CLI's
sts / tatoeba / xsts tasks (which the notebooks call) run the same evaluators with the loaded
model's embedder (`embed_override`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from clowlab.errors import ClowlabError
from clowlab.evaluators import flow, mlm, sts, xlingual
from clowlab.models import embedder as embedder_lib


@dataclasses.dataclass(frozen=True)
class EvalContext:
  """What every evaluator gets: the model, the run config, the tokenizer and where to cache."""
  method: Any  # clowlab.methods.Method (its embed and mlm_eval), or None with embed_override
  params: Any
  ecfg: Any
  cfg: Any
  tokenizer: Any
  cache_dir: str | None  # None: the data layer's default cache
  process_index: int = 0
  process_count: int = 1
  # numpy batch -> global jax arrays on the run's mesh (the engine's sharding.global_batch).
  global_batch: Callable[[dict], Any] = lambda batch: batch
  # An embedder to use instead of the method's (the evaluate CLI's --pooling / --layer).
  embed_override: Any = None
  # One jitted embedding function per evaluation, shared by its entries (InfoXLM's four entries
  # would otherwise compile it four times).
  _fn: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

  def embedder(self, batch_size: int = 64) -> embedder_lib.Embedder:
    """Texts -> vectors as the method embeds in evaluation mode (mean pooling without one)."""
    if self.embed_override is not None:
      return self.embed_override
    if "fn" not in self._fn:
      self._fn["fn"] = (
          embedder_lib.method_fn(self.method, self.params, self.ecfg, self.cfg)
          if self.method.embed is not None
          else embedder_lib.pooled_fn(self.params["encoder"], self.ecfg, "mean"))
    return embedder_lib.Embedder(self.tokenizer, self._fn["fn"], seq_len=self.cfg.seq_len,
                                 batch_size=batch_size)


EVALUATORS: dict[str, Callable[[dict, EvalContext], dict[str, float]]] = {
    "mlm": mlm.run, "sts": sts.run, "flow_sts": flow.run, "tatoeba": xlingual.run_tatoeba,
    "xsts": xlingual.run_xsts, "bitext": xlingual.run_bitext,
    "xsts_files": xlingual.run_xsts_files}


def get(type_: str) -> Callable[[dict, EvalContext], dict[str, float]]:
  if type_ not in EVALUATORS:
    raise ClowlabError(f"clowlab: unknown evaluator type {type_!r}; valid: "
                       f"{', '.join(EVALUATORS)}.")
  return EVALUATORS[type_]


def entries(method, cfg, cache_dir: str) -> dict[str, dict]:
  """config.evals when set, else the method's own entries; named with their config key."""
  explicit = cfg.get("evals", None)
  explicit = explicit.to_dict() if hasattr(explicit, "to_dict") else dict(explicit or {})
  if explicit:
    for name, spec in explicit.items():
      if not isinstance(spec, dict) or "type" not in spec:
        raise ClowlabError(f"clowlab: config.evals.{name} needs a 'type' (one of "
                           f"{', '.join(EVALUATORS)}) and that type's keys.")
      get(spec["type"])  # an unknown type fails here, naming the valid ones
    return explicit
  if method.evals is None:
    raise ClowlabError(f"clowlab: method {method.name!r} has no evaluator of its own; use "
                       "--config.mode=train, or name evaluators in config.evals.")
  return method.evals(cfg, cache_dir)


def evaluate(ctx: EvalContext) -> dict[str, float]:
  """Runs every entry of the run's evaluation; one dict of metrics (each evaluator's names)."""
  out: dict[str, float] = {}
  for spec in entries(ctx.method, ctx.cfg, ctx.cache_dir).values():
    out.update(get(spec["type"])(spec, ctx))
  return out
