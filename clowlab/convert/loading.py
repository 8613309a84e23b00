"""Model loading, in one place: an HF model directory or a clowlab workdir (local or gs://) ->
encoder config, params and tokenizer. train (init_from), embed, evaluate, aot and convert all
read models through here (clowlab.embed re-exports load_model and LoadedModel).

    w = loading.load_weights(src)          # numpy params, EncoderConfig, meta, description
    m = loading.load_model(src)            # + the tokenizer (vocabulary checked): a LoadedModel
    ecfg, where = loading.encoder_config(src)   # the architecture only, no weights (aot)

A workdir gives its checkpoint's params (the encoder and every head), meta and tokenizer; an HF
directory gives {"encoder"[, "mlm_head"]}, the tokenizer files beside it and, for a sentence
model exported by clowlab, its pooler config and head weights (convert/workdir.py writes them).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

import jax
import numpy as np

from clowlab import checkpoint, paths, workdir as workdir_lib
from clowlab.convert import hf
from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc


# Written next to an exported HF model by sentence-embedding methods (convert/workdir.py): the
# method's pooler config and head weights, read back to embed as the method does.
POOLER_CONFIG = "clowlab_pooler.json"
POOLER_WEIGHTS = "clowlab_pooler.safetensors"


@dataclasses.dataclass
class Weights:
  params: dict  # numpy trees: {"encoder": ..., heads}
  ecfg: enc.EncoderConfig
  meta: dict  # a workdir's checkpoint meta; {} for an HF directory
  run_cfg: dict  # the training config of a workdir, the pooler config of an export, else {}
  description: str
  step: int | None = None


@dataclasses.dataclass
class LoadedModel:
  """What `load_model` reads from a clowlab workdir or an HF directory.

  params: numpy tree {"encoder": ...} plus any sentence head of the method that trained it.
  run_cfg: the training config of a workdir, the pooler config of an exported sentence model,
    else {}.
  """
  params: dict
  ecfg: enc.EncoderConfig
  tokenizer: Any
  run_cfg: dict
  description: str
  path: pathlib.Path


def _exists(src: str | os.PathLike) -> bool:
  return paths.path(src).exists()


def load_weights(src: str | os.PathLike, step: int | None = None, *, pooler: bool = True,
                 workdir_only: bool = False) -> Weights:
  """Params (numpy), encoder config, meta and a description of `src`.

  step: a workdir's checkpoint step (default: the latest readable one).
  pooler: add an exported sentence model's pooler head (clowlab_pooler.*) to the params.
  workdir_only: `src` must be a clowlab workdir (export): anything else is named as a workdir
    without checkpoints.
  """
  if not workdir_only and not _exists(src):
    raise ClowlabError(f"clowlab: model {src} does not exist; pass an HF model directory or a "
                       "clowlab workdir.")
  if workdir_only or workdir_lib.is_workdir(src):
    params, meta, step = checkpoint.restore(src, step)
    if "encoder" not in params or "encoder_config" not in meta:
      raise ClowlabError(f"clowlab: the checkpoint in {src} holds no encoder; it needs a workdir "
                         "written by `clowlab.convert import` or a clowlab training run.")
    ecfg = enc.EncoderConfig.from_dict(meta["encoder_config"])
    params = {k: jax.tree_util.tree_map(np.asarray, v) for k, v in dict(params).items()}
    return Weights(params, ecfg, meta, meta.get("config") or {},
                   f"{src} (clowlab checkpoint, step {step})", step)
  path = pathlib.Path(src)
  m = hf.load_hf(path)
  params = {"encoder": m.params}
  if m.mlm_head is not None:
    params["mlm_head"] = m.mlm_head
  run_cfg = {}
  if pooler and (path / POOLER_CONFIG).exists():
    from safetensors.numpy import load_file  # noqa: PLC0415
    run_cfg = json.loads((path / POOLER_CONFIG).read_text())
    if (path / POOLER_WEIGHTS).exists():
      params.update(unflatten(load_file(str(path / POOLER_WEIGHTS))))
  return Weights(params, m.cfg, {}, run_cfg, f"{src} (HF {m.cfg.model_type})")


def tokenizer_dir(src: str | os.PathLike, meta: dict | None = None) -> str:
  """The local directory of `src`'s tokenizer: a workdir's tokenizer/ (a local copy for gs://),
  an HF directory itself."""
  if workdir_lib.is_workdir(src):
    name = (meta or {}).get("tokenizer") or workdir_lib.TOKENIZER_SUBDIR
    return workdir_lib.local_tokenizer_dir(os.fspath(src), name, jax.process_index())
  return os.fspath(src)


def load_model(src: str | os.PathLike, step: int | None = None) -> LoadedModel:
  """Params (the encoder, without an HF directory's MLM head), encoder config and tokenizer of
  a clowlab workdir or an HF model directory; the tokenizer must match the vocabulary."""
  from clowlab.data import tokenizers  # noqa: PLC0415
  w = load_weights(src, step)
  params = {k: v for k, v in w.params.items() if w.meta or k != "mlm_head"}
  tokenizer = tokenizers.load_tokenizer(tokenizer_dir(src, w.meta))
  tokenizers.check_vocab_matches(tokenizer, w.ecfg.vocab_size, os.fspath(src))
  return LoadedModel(params, w.ecfg, tokenizer, w.run_cfg, w.description, pathlib.Path(src))


def encoder_config(src: str | os.PathLike) -> enc.EncoderConfig:
  """`src`'s architecture without reading any weights: a workdir's checkpoint meta or an HF
  directory's config.json."""
  if workdir_lib.is_workdir(src):
    with checkpoint.Manager(src, read_only=True, max_to_keep=None) as m:
      return enc.EncoderConfig.from_dict(m.read_meta()["encoder_config"])
  cfg_path = os.path.join(src, "config.json")
  if not os.path.isfile(cfg_path):
    raise ClowlabError(
        f"clowlab: --config.init_from={src} is neither an HF model directory (config.json) nor "
        "a clowlab workdir. Point it at one, or pass --config.init_from='' to compile with "
        "config.model's architecture (BERT-base where it sets none).")
  with open(cfg_path, encoding="utf-8") as f:
    return hf.config_from_hf(json.load(f), cfg_path)


def flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
  """{"a/b/c": array} from a nested dict (for safetensors)."""
  out = {}
  for k, v in tree.items():
    name = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flatten(v, name + "/"))
    elif isinstance(v, (list, tuple)):
      out.update(flatten({str(i): x for i, x in enumerate(v)}, name + "/"))
    else:
      out[name] = np.asarray(v)
  return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
  """Inverse of `flatten`; dicts whose keys are 0..n-1 become lists."""
  tree: dict = {}
  for name, v in flat.items():
    node = tree
    *parents, leaf = name.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v

  def fix(node):
    if not isinstance(node, dict):
      return node
    node = {k: fix(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node) and sorted(map(int, node)) == list(range(len(node))):
      return [node[str(i)] for i in range(len(node))]
    return node

  return fix(tree)
