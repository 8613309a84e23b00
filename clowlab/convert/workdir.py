"""HF directory <-> clowlab workdir (an orbax checkpoint plus the tokenizer files)."""
from __future__ import annotations

import os
import pathlib

import numpy as np

from clowlab import checkpoint
from clowlab.convert import hf
from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc

TOKENIZER_SUBDIR = "tokenizer"


def _check_tokenizer(tok_dir: pathlib.Path, cfg: enc.EncoderConfig, source: str) -> None:
  from clowlab.data import tokenizers  # noqa: PLC0415 - keeps `import clowlab.convert` light
  tok = tokenizers.load_tokenizer(str(tok_dir))
  tokenizers.check_vocab_matches(tok, cfg.vocab_size, source)


def import_to_workdir(hf_dir: str | os.PathLike, workdir: str | os.PathLike) -> hf.HFModel:
  """Writes the HF model in `hf_dir` as step 0 of a clowlab checkpoint in `workdir`."""
  if checkpoint.latest_step(workdir) is not None:
    raise ClowlabError(f"clowlab: {checkpoint.checkpoint_dir(workdir)} already holds "
                       "checkpoints; import into a new --workdir (clowlab never overwrites one).")
  model = hf.load_hf(hf_dir)
  tok_dir = pathlib.Path(workdir) / TOKENIZER_SUBDIR
  if hf.copy_tokenizer_files(hf_dir, tok_dir):
    _check_tokenizer(tok_dir, model.cfg, str(pathlib.Path(hf_dir) / "config.json"))
  params = {"encoder": model.params}
  if model.mlm_head is not None:
    params["mlm_head"] = model.mlm_head
  meta = {"encoder_config": model.cfg.to_dict(), "source": str(pathlib.Path(hf_dir).absolute()),
          "tokenizer": TOKENIZER_SUBDIR if tok_dir.is_dir() else None, "notes": model.notes}
  checkpoint.save(workdir, 0, params, meta)
  return model


def load_workdir(workdir: str | os.PathLike, step: int | None = None):
  """(params as numpy, EncoderConfig, meta, step) of a clowlab workdir's checkpoint."""
  params, meta, step = checkpoint.restore(workdir, step)
  if "encoder" not in params or "encoder_config" not in meta:
    raise ClowlabError(f"clowlab: the checkpoint in {workdir} holds no encoder; export needs a "
                       "workdir written by `clowlab.convert import` or a clowlab training run.")
  cfg = enc.EncoderConfig.from_dict(meta["encoder_config"])
  params = {k: _to_numpy(v) for k, v in params.items()}
  return params, cfg, meta, step


def _to_numpy(tree):
  import jax  # noqa: PLC0415
  return jax.tree_util.tree_map(np.asarray, tree)


def export_workdir(workdir: str | os.PathLike, out_dir: str | os.PathLike, *,
                   step: int | None = None, with_mlm_head: bool = False,
                   overwrite: bool = False) -> str:
  """Writes a workdir's checkpoint (latest by default) as an HF model directory."""
  params, cfg, meta, step = load_workdir(workdir, step)
  head = None
  if with_mlm_head:
    if "mlm_head" not in params:
      raise ClowlabError(f"clowlab: the checkpoint at step {step} in {workdir} has no MLM head; "
                         "export without --with_mlm_head.")
    head = params["mlm_head"]
  tok = meta.get("tokenizer")
  tok_dir = pathlib.Path(workdir) / tok if tok else None
  return hf.save_hf(out_dir, params["encoder"], cfg, mlm_head=head, tokenizer_dir=tok_dir,
                    overwrite=overwrite)
