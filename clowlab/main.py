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
  from clowlab import train  # noqa: PLC0415 - import jax only after flags parsed
  from clowlab.errors import ClowlabError  # noqa: PLC0415
  modes = ("train", "eval", "train_and_eval")
  if cfg.mode not in modes:
    raise ClowlabError(f"clowlab: unknown --config.mode={cfg.mode!r}; valid: {', '.join(modes)}.")
  if cfg.mode in ("train", "train_and_eval"):
    train.train(cfg, workdir)  # train_and_eval evaluates at eval_every and at the last step
  else:
    from clowlab import evaluate  # noqa: PLC0415
    evaluate.evaluate_workdir(cfg, workdir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required")
  from clowlab.errors import ClowlabError  # noqa: PLC0415
  logging.set_verbosity(logging.WARNING)
  try:
    _run(_CONFIG.value, _WORKDIR.value)
  except ClowlabError as e:
    print(e, file=sys.stderr)
    sys.exit(2)


def _add_config_root_to_path(argv) -> None:
  """Config files import `configs.common`: make the directory above configs/ importable."""
  for a in argv:
    if a.startswith("--config="):
      path = a.split("=", 1)[1].split(":", 1)[0]
      sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(path))))


def run() -> None:
  _add_config_root_to_path(sys.argv)
  app.run(main)


if __name__ == "__main__":
  run()
