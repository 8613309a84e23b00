"""Checks a run config before any work: unknown keys, wrong types, impossible values.

    config_check.check(cfg)          # ClowlabError listing every problem, naming key and fix

The keys and types a method accepts are those its shipped configs use (configs/<name>.py, every
variant in its VARIANTS), recorded in config_schema.json next to this file; a test rebuilds
the schema from configs/ and fails when they drift (CLOWLAB_UPDATE_GOLDEN=1 rewrites it). So a
typo in a config file or a value of the wrong type fails in a second with the valid keys named,
instead of being ignored or failing deep inside jax. `model.*` keys are the EncoderConfig
fields; `optim.groups` is a free mapping. What needs the devices (mesh size, batch divisible by
the data-parallel size) is checked by sharding.py and train.py when the mesh exists.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import math
import os
import pathlib
from typing import Any

from clowlab.errors import ClowlabError

SCHEMA_FILE = pathlib.Path(__file__).with_name("config_schema.json")
# Sub-trees whose keys are the user's: an empty dict in the configs, or the encoder's fields.
OPEN = ("optim.groups", "evals")
MODEL = "model"
_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list",
               tuple: "list", type(None): "none"}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if hasattr(v, "items") and not (key in OPEN or key == MODEL):
      if len(v) == 0:
        out[key] = {}
      else:
        out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def _type_name(v: Any) -> str:
  if hasattr(v, "items"):
    return "dict"
  return _TYPE_NAMES.get(type(v), type(v).__name__)


# ---------------------------------------------------------------------------------------------
# The schema, built from the shipped configs


def build_schema(configs_dir: str | os.PathLike) -> dict[str, dict[str, list[str]]]:
  """{method: {dotted key: sorted type names}} over every variant of every configs/*.py."""
  import sys  # noqa: PLC0415
  root = str(pathlib.Path(configs_dir).absolute().parent)
  sys.path.insert(0, root)
  try:
    schema: dict[str, dict[str, set[str]]] = {}
    for path in sorted(pathlib.Path(configs_dir).glob("*.py")):
      mod = importlib.import_module(f"configs.{path.stem}")
      for variant in getattr(mod, "VARIANTS", ()):
        cfg = mod.get_config(variant)
        keys = schema.setdefault(cfg.method, {})
        for k, v in _flatten(cfg.to_dict()).items():
          keys.setdefault(k, set()).add(_type_name(v))
  finally:
    sys.path.remove(root)
  return {m: {k: sorted(t) for k, t in sorted(keys.items())} for m, keys in sorted(schema.items())}


def load_schema() -> dict[str, dict[str, list[str]]]:
  return json.loads(SCHEMA_FILE.read_text())


# ---------------------------------------------------------------------------------------------
# The check


def _type_ok(value: Any, allowed: list[str]) -> bool:
  got = _type_name(value)
  if "none" in allowed and len(allowed) == 1:  # only ever None in the configs: any value
    return True
  if got == "none":
    return "none" in allowed or "str" in allowed  # "" and None both mean "unset" for strings
  if got == "int" and "float" in allowed:
    return True
  if got == "dict" and "dict" in allowed:
    return True
  return got in allowed


def _describe(allowed: list[str]) -> str:
  names = {"int": "an integer", "float": "a number", "str": "a string", "bool": "True/False",
           "list": "a list", "dict": "a mapping", "none": "None"}
  return " or ".join(names.get(t, t) for t in allowed)


# (key, test, what it must be): values no run can use.
_RANGES = (
    ("total_steps", lambda v: v >= 1, ">= 1"),
    ("batch_size", lambda v: v >= 1, ">= 1"),
    ("seq_len", lambda v: v >= 2, ">= 2 ([CLS] and [SEP])"),
    ("checkpoint_every", lambda v: v >= 1, ">= 1"),
    ("log_every", lambda v: v >= 1, ">= 1"),
    ("eval_every", lambda v: v >= 0, ">= 0 (0: only at the end)"),
    ("keep_checkpoints", lambda v: v >= 0, ">= 0 (0: keep all)"),
    ("max_bad_steps", lambda v: v >= 1, ">= 1"),
    ("grad_accum_steps", lambda v: v >= 1, ">= 1"),
    ("max_train_seconds", lambda v: v >= 0 and math.isfinite(v), ">= 0 (0: no limit)"),
    ("preemption_grace_s", lambda v: v >= 0 and math.isfinite(v), ">= 0 (0: no deadline)"),
    ("num_devices", lambda v: v >= 0, ">= 0 (0: all devices)"),
    ("optim.lr", lambda v: v > 0 and math.isfinite(v), "a finite number > 0"),
    ("optim.warmup_steps", lambda v: v >= 0, ">= 0"),
    ("optim.weight_decay", lambda v: v >= 0 and math.isfinite(v), ">= 0"),
    ("optim.clip_norm", lambda v: v >= 0 and math.isfinite(v), ">= 0 (0: no clipping)"),
    ("optim.b1", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("optim.b2", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("optim.eps", lambda v: v > 0 and math.isfinite(v), "> 0"),
)
_CHOICES = {"mode": ("train", "eval", "train_and_eval"), "on_save_error": ("stop", "continue")}


def check(cfg) -> None:
  """Raises one ClowlabError listing every problem of `cfg` (a ConfigDict or dict)."""
  from clowlab import methods  # noqa: PLC0415 - methods import jax; keep this module light
  from clowlab.models import encoder as enc  # noqa: PLC0415
  d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
  method = d.get("method")
  if not isinstance(method, str) or not method:
    raise ClowlabError("clowlab: config.method is not set; valid: "
                       f"{', '.join(sorted(methods.METHODS))}. Start from a configs/<method>.py.")
  methods.get(method)  # unknown names fail listing the valid ones
  schema = load_schema().get(method)
  problems: list[str] = []
  flat = _flatten(d)
  if schema is not None:  # a method registered by the user has no shipped config to check against
    for key, value in flat.items():
      if key == MODEL or key in OPEN:
        if not hasattr(value, "items"):
          problems.append(f"{key}={value!r} must be a mapping")
        continue
      if value == {} and any(k.startswith(key + ".") for k in schema):
        continue  # an empty section: its keys' defaults apply
      if key not in schema:
        level = key.rpartition(".")[0]
        siblings = sorted(k.rpartition(".")[2] for k in schema
                          if k.rpartition(".")[0] == level)
        close = difflib.get_close_matches(key.rpartition(".")[2], siblings, n=1)
        problems.append(
            f"unknown key {key!r} for method {method!r}"
            + (f" (did you mean {(level + '.' if level else '') + close[0]!r}?)" if close else "")
            + (f"; valid keys{' under ' + level if level else ''}: {', '.join(siblings)}"
               if siblings and len(siblings) <= 40 else ""))
      elif not _type_ok(value, schema[key]):
        problems.append(f"{key}={value!r} is {_describe([_type_name(value)])}; it must be "
                        f"{_describe(schema[key])}")
  for key, test, what in _RANGES:
    v = flat.get(key)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
      try:
        ok = test(v)
      except TypeError:
        ok = False
      if not ok:
        problems.append(f"{key}={v!r} must be {what}")
  for key, choices in _CHOICES.items():
    if key in flat and flat[key] not in choices:
      problems.append(f"{key}={flat[key]!r}; valid: {', '.join(choices)}")
  evals = d.get("evals") or {}
  if hasattr(evals, "items") and evals:
    from clowlab.evaluators import registry  # noqa: PLC0415
    for name, entry in evals.items():
      if not hasattr(entry, "items") or entry.get("type") not in registry.EVALUATORS:
        problems.append(f"evals.{name} needs a 'type' among {', '.join(registry.EVALUATORS)} "
                        f"(got {entry.get('type') if hasattr(entry, 'items') else entry!r})")
  bs, accum = flat.get("batch_size"), flat.get("grad_accum_steps", 1)
  if (isinstance(bs, int) and isinstance(accum, int) and not isinstance(accum, bool)
      and accum >= 1 and bs % accum):
    problems.append(f"batch_size={bs} is not divisible by grad_accum_steps={accum} (each step "
                    "splits the batch into that many micro-batches)")
  model = d.get(MODEL) or {}
  if hasattr(model, "items") and model:
    known = {f.name for f in dataclasses.fields(enc.EncoderConfig)}
    unknown = sorted(set(model) - known)
    for k in unknown:
      close = difflib.get_close_matches(k, sorted(known), n=1)
      problems.append(f"unknown key 'model.{k}'" + (f" (did you mean 'model.{close[0]}'?)"
                                                    if close else "")
                      + f"; valid: {', '.join(sorted(known))}")
    if not unknown and not d.get("init_from"):
      try:  # a fresh architecture: sizes, heads | hidden, dropouts (vocab comes later)
        enc.EncoderConfig.from_dict({"vocab_size": 8, "pad_token_id": 0, **model})
      except ClowlabError as e:
        problems.append(str(e).removeprefix("clowlab: ").rstrip("."))
      except (TypeError, ValueError) as e:
        problems.append(f"model: {e}")
      mpe, seq = model.get("max_position_embeddings"), flat.get("seq_len")
      if isinstance(mpe, int) and isinstance(seq, int) and seq > mpe:
        problems.append(f"seq_len={seq} exceeds model.max_position_embeddings={mpe}")
  if problems:
    n = len(problems)
    raise ClowlabError(
        f"clowlab: the {method} config has {n} problem{'s' if n > 1 else ''}: "
        + "; ".join(f"({i + 1}) {p}" for i, p in enumerate(problems))
        + ". Fix them in the config file or with --config.<key>=<value>.")


def main(argv: list[str] | None = None) -> None:
  """python -m clowlab.config_check [CONFIGS_DIR]: rewrites config_schema.json."""
  import sys  # noqa: PLC0415
  argv = sys.argv[1:] if argv is None else argv
  configs_dir = argv[0] if argv else str(pathlib.Path(__file__).parents[1] / "configs")
  SCHEMA_FILE.write_text(json.dumps(build_schema(configs_dir), indent=1, sort_keys=True) + "\n")
  print(f"wrote {SCHEMA_FILE}")


if __name__ == "__main__":
  main()
