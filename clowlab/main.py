"""Entry point: python -m clowlab.main --config=configs/<method>.py[:variant] --workdir=DIR
                                       [--config.key=value ...]

config.mode: train | eval | train_and_eval. User mistakes print one message, no traceback.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics).")


def _run(cfg, workdir: str) -> None:
  # Both entry points start with config_check, which rejects an unknown mode.
  if cfg.get("mode") == "eval":
    from clowlab import evaluate  # noqa: PLC0415 - import jax only after flags parsed
    evaluate.evaluate_workdir(cfg, workdir)
  else:
    from clowlab import train  # noqa: PLC0415
    train.train(cfg, workdir)  # train_and_eval evaluates at eval_every and at the last step


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required")
  from clowlab.errors import ClowlabError  # noqa: PLC0415
  logging.set_verbosity(logging.WARNING)
  try:
    cfg = _CONFIG.value
    cfg.get("method")  # config_flags loads the file lazily: a missing one fails here
  except OSError as e:
    root = e
    while root.__cause__ is not None:
      root = root.__cause__
    print("clowlab: --config: " + " ".join(str(root).split()) + ". Check the --config path "
          "(relative to the current directory).", file=sys.stderr)
    sys.exit(2)
  try:
    _run(cfg, _WORKDIR.value)
  except ClowlabError as e:
    print(e, file=sys.stderr)
    sys.exit(2)


def _add_config_root_to_path(argv) -> None:
  """Config files import `configs.common`: make the directory above configs/ importable."""
  for a in argv:
    if a.startswith("--config="):
      path = a.split("=", 1)[1].split(":", 1)[0]
      sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(path))))


def _parse_flags(argv):
  """absl's parsing, with every bad flag as one line and exit code 2: a value of the wrong type,
  and an override of a key the config does not have (ml_collections raises KeyError or
  AttributeError from deep inside for that)."""
  import re  # noqa: PLC0415
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    # config_flags folds a failing config file's traceback into the message: keep its last line
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    first, last = lines[0].removesuffix("Error whilst parsing config file:").strip(), lines[-1]
    print(f"clowlab: {first}" + (f" {last}" if last != lines[0] else "")
          + (". Use a value of the type the config file gives that key." if "config." in first
             else ". Check the --config path and variant."), file=sys.stderr)
  except (KeyError, AttributeError) as e:
    text = str(e).replace("\\'", "'").replace("\\n", " ")
    names = re.findall(r"'([A-Za-z_][A-Za-z0-9_]*)'", text)
    hint = re.search(r'Did you mean "([^"]+)"', text)
    key = names[0] if names else "?"
    given = [a for a in argv[1:] if a.startswith("--config.")
             and a.split("=", 1)[0].rsplit(".", 1)[-1] == key]
    print(f"clowlab: {given[0] if given else '--config.' + key}: the config has no key {key!r}"
          + (f" (did you mean {hint.group(1)!r}?)" if hint else "")
          + ". Use a key the config file defines (see its get_config).", file=sys.stderr)
  sys.exit(2)


def run() -> None:
  _add_config_root_to_path(sys.argv)
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
