"""CLI: python -m clowlab.convert import --hf_dir=DIR --workdir=W
       python -m clowlab.convert export --workdir=W --out=DIR [--step=N] [--with_mlm_head]"""
from __future__ import annotations

import sys

from absl import app, flags, logging

from clowlab.errors import ClowlabError

flags.DEFINE_string("hf_dir", None, "import: local HF model directory (config.json + weights).")
flags.DEFINE_string("workdir", None, "clowlab workdir (import writes it, export reads it).")
flags.DEFINE_string("out", None, "export: output HF directory (must not exist or be empty).")
flags.DEFINE_integer("step", None, "export: checkpoint step (default: latest).")
flags.DEFINE_bool("with_mlm_head", False, "export: write *ForMaskedLM with the MLM head.")
FLAGS = flags.FLAGS
USAGE = __doc__


def main(argv):
  from clowlab import convert  # noqa: PLC0415 - after flag parsing, so --help is fast
  if len(argv) != 2 or argv[1] not in ("import", "export"):
    raise app.UsageError(USAGE)
  logging.set_verbosity(logging.WARNING)  # as clowlab.main: no orbax INFO lines per item
  try:
    if argv[1] == "import":
      if not FLAGS.hf_dir or not FLAGS.workdir:
        raise app.UsageError("import needs --hf_dir and --workdir.\n" + USAGE)
      model = convert.import_to_workdir(FLAGS.hf_dir, FLAGS.workdir)
      n = sum(x.size for x in __import__("jax").tree_util.tree_leaves(model.params))
      print(f"imported {FLAGS.hf_dir} ({model.cfg.model_type}, {model.cfg.num_layers} layers, "
            f"hidden {model.cfg.hidden_size}, {n:,} encoder params"
            f"{', MLM head' if model.mlm_head is not None else ''}) into {FLAGS.workdir}")
      for note in model.notes:
        print("note:", note)
    else:
      if not FLAGS.workdir or not FLAGS.out:
        raise app.UsageError("export needs --workdir and --out.\n" + USAGE)
      out = convert.export_workdir(FLAGS.workdir, FLAGS.out, step=FLAGS.step,
                                   with_mlm_head=FLAGS.with_mlm_head)
      print(f"exported {FLAGS.workdir} to {out}")
  except ClowlabError as e:
    print(e, file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
