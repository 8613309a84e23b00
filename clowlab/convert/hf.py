"""Hugging Face <-> clowlab weights for BERT, RoBERTa and XLM-R encoders.

Import reads a local HF model directory (config.json + model.safetensors, a sharded
model.safetensors.index.json, or pytorch_model.bin when torch is installed) into clowlab's params
tree; export writes clowlab params as a directory that PyTorch `transformers.AutoModel` (or
`AutoModelForMaskedLM` when the MLM head is exported) loads with no missing or unexpected keys.
Only numpy, safetensors and json are needed; torch is imported lazily for `.bin` files alone.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import re
import shutil
import tempfile
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc

SUPPORTED = {"bert": "Bert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta"}
_BASE_PREFIX = {"bert": "bert.", "roberta": "roberta.", "xlm-roberta": "roberta."}
# Keys HF checkpoints may carry that are buffers, tied copies or heads we do not use.
_IGNORED = re.compile(r"(^|\.)(position_ids|token_type_ids)$|^cls\.seq_relationship\.|"
                      r"^cls\.predictions\.decoder\.|^lm_head\.decoder\.|^classifier\.|^qa_outputs\.")


@dataclasses.dataclass
class HFModel:
  """What an HF directory holds, in clowlab form."""
  cfg: enc.EncoderConfig
  params: dict[str, Any]            # the encoder tree (see clowlab.models.encoder)
  mlm_head: dict[str, Any] | None   # clowlab.models.heads MLM head, when the checkpoint has one
  notes: list[str]                  # what was initialised fresh or ignored, for the user


# ---------------------------------------------------------------------------------------------
# config.json


def config_from_hf(hf: dict[str, Any], source: str) -> enc.EncoderConfig:
  model_type = hf.get("model_type")
  if model_type not in SUPPORTED:
    raise ClowlabError(
        f"clowlab: {source} has model_type={model_type!r}; clowlab imports "
        f"{', '.join(sorted(SUPPORTED))}. Convert a BERT, RoBERTa or XLM-R checkpoint.")
  pos_type = hf.get("position_embedding_type", "absolute")
  if pos_type != "absolute":
    raise ClowlabError(f"clowlab: {source} has position_embedding_type={pos_type!r}; only "
                       "'absolute' position embeddings are supported.")
  required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "intermediate_size")
  missing = [k for k in required if k not in hf]
  if missing:
    raise ClowlabError(f"clowlab: {source} lacks {missing}; an HF BERT-family config.json "
                       "must name them.")
  pad = hf.get("pad_token_id")
  pad = (0 if model_type == "bert" else 1) if pad is None else int(pad)
  return enc.EncoderConfig(
      vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
      num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
      intermediate_size=hf["intermediate_size"],
      max_position_embeddings=hf.get("max_position_embeddings", 512),
      type_vocab_size=hf.get("type_vocab_size", 2),
      position_offset=0 if model_type == "bert" else pad + 1,
      pad_token_id=pad, layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
      hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
      attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
      activation=hf.get("hidden_act", "gelu"),
      initializer_range=hf.get("initializer_range", 0.02), model_type=model_type)


def config_to_hf(cfg: enc.EncoderConfig, with_mlm_head: bool) -> dict[str, Any]:
  arch = SUPPORTED[cfg.model_type] + ("ForMaskedLM" if with_mlm_head else "Model")
  out = {
      "architectures": [arch], "model_type": cfg.model_type,
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
      "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
      "intermediate_size": cfg.intermediate_size, "hidden_act": cfg.activation,
      "hidden_dropout_prob": cfg.hidden_dropout,
      "attention_probs_dropout_prob": cfg.attention_dropout,
      "max_position_embeddings": cfg.max_position_embeddings,
      "type_vocab_size": cfg.type_vocab_size, "initializer_range": cfg.initializer_range,
      "layer_norm_eps": cfg.layer_norm_eps, "pad_token_id": cfg.pad_token_id,
      "position_embedding_type": "absolute", "tie_word_embeddings": True,
      "dtype": "float32",
  }
  if cfg.model_type != "bert":
    out.update(bos_token_id=0, eos_token_id=2)
  return out


# ---------------------------------------------------------------------------------------------
# Tensor names


def _hf_names(cfg: enc.EncoderConfig) -> dict[str, tuple[tuple[str, ...], bool]]:
  """Unprefixed HF tensor name -> (path in clowlab's encoder tree, is a Linear weight)."""
  names = {
      "embeddings.word_embeddings.weight": (("embeddings", "word"), False),
      "embeddings.position_embeddings.weight": (("embeddings", "position"), False),
      "embeddings.token_type_embeddings.weight": (("embeddings", "token_type"), False),
      "embeddings.LayerNorm.weight": (("embeddings", "ln", "scale"), False),
      "embeddings.LayerNorm.bias": (("embeddings", "ln", "bias"), False),
      "pooler.dense.weight": (("pooler", "kernel"), True),
      "pooler.dense.bias": (("pooler", "bias"), False),
  }
  per_layer = {
      "attention.self.query": ("attn", "q"), "attention.self.key": ("attn", "k"),
      "attention.self.value": ("attn", "v"), "attention.output.dense": ("attn", "o"),
      "intermediate.dense": ("mlp", "wi"), "output.dense": ("mlp", "wo"),
  }
  for i in range(cfg.num_layers):
    for hf, ours in per_layer.items():
      names[f"encoder.layer.{i}.{hf}.weight"] = (("layers", *ours, "kernel", i), True)
      names[f"encoder.layer.{i}.{hf}.bias"] = (("layers", *ours, "bias", i), False)
    for hf, ours in (("attention.output.LayerNorm", "attn_ln"), ("output.LayerNorm", "mlp_ln")):
      names[f"encoder.layer.{i}.{hf}.weight"] = (("layers", ours, "scale", i), False)
      names[f"encoder.layer.{i}.{hf}.bias"] = (("layers", ours, "bias", i), False)
  return names


def _mlm_names(model_type: str) -> dict[str, tuple[tuple[str, ...], bool]]:
  if model_type == "bert":
    p = "cls.predictions."
    return {p + "transform.dense.weight": (("dense", "kernel"), True),
            p + "transform.dense.bias": (("dense", "bias"), False),
            p + "transform.LayerNorm.weight": (("ln", "scale"), False),
            p + "transform.LayerNorm.bias": (("ln", "bias"), False),
            p + "bias": (("bias",), False)}
  p = "lm_head."
  return {p + "dense.weight": (("dense", "kernel"), True), p + "dense.bias": (("dense", "bias"), False),
          p + "layer_norm.weight": (("ln", "scale"), False),
          p + "layer_norm.bias": (("ln", "bias"), False), p + "bias": (("bias",), False)}


def _normalise(name: str, model_type: str) -> str:
  """Strips the base-model prefix and maps TF-era LayerNorm gamma/beta names."""
  for prefix in (_BASE_PREFIX[model_type], "model."):
    if name.startswith(prefix):
      name = name[len(prefix):]
      break
  return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$",
                                                                  "LayerNorm.bias", name))


# ---------------------------------------------------------------------------------------------
# Reading tensors


def _read_tensors(d: pathlib.Path) -> tuple[dict[str, np.ndarray], str]:
  st, index, pt = d / "model.safetensors", d / "model.safetensors.index.json", d / "pytorch_model.bin"
  if st.exists():
    return load_file(str(st)), str(st)
  if index.exists():
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    out = {}
    for shard in shards:
      if not (d / shard).exists():
        raise ClowlabError(f"clowlab: {index} names shard {shard} but {d / shard} is missing. "
                           "Copy the complete checkpoint directory.")
      out.update(load_file(str(d / shard)))
    return out, str(index)
  if pt.exists():
    try:
      import torch  # noqa: PLC0415 - optional, only for .bin checkpoints
    except ImportError as e:
      raise ClowlabError(f"clowlab: {pt} is a PyTorch pickle and reading it needs torch. "
                         "Install torch (CPU build is enough) or save the model as "
                         "model.safetensors.") from e
    sd = torch.load(str(pt), map_location="cpu", weights_only=True)
    return {k: v.detach().to(torch.float32 if v.is_floating_point() else v.dtype).numpy()
            for k, v in sd.items()}, str(pt)
  raise ClowlabError(f"clowlab: no weights in {d}: looked for model.safetensors, "
                     "model.safetensors.index.json and pytorch_model.bin. Point at an HF model "
                     "directory saved with save_pretrained().")


def _set(tree, path, value):
  *parents, leaf = path
  for p in parents:
    tree = tree.setdefault(p, {})
  tree[leaf] = value


def _get(tree, path):
  for p in path:
    tree = tree[p]
  return tree


def load_hf(hf_dir: str | os.PathLike) -> HFModel:
  """Reads an HF BERT/RoBERTa/XLM-R directory into clowlab params (float32)."""
  d = pathlib.Path(hf_dir)
  if not d.is_dir():
    raise ClowlabError(f"clowlab: HF model directory {d} does not exist. Pass a local directory "
                       "with config.json and model.safetensors (model hubs are not used).")
  cfg_path = d / "config.json"
  if not cfg_path.exists():
    raise ClowlabError(f"clowlab: {cfg_path} is missing. An HF model directory needs "
                       "config.json next to its weights.")
  try:
    hf_cfg = json.loads(cfg_path.read_text())
  except json.JSONDecodeError as e:
    raise ClowlabError(f"clowlab: {cfg_path} is not valid JSON ({e}).") from e
  cfg = config_from_hf(hf_cfg, str(cfg_path))
  tensors, weights_file = _read_tensors(d)
  tensors = {_normalise(k, cfg.model_type): v for k, v in tensors.items()}

  shapes = enc.param_shapes(cfg)
  names = _hf_names(cfg)
  stacked: dict[tuple[str, ...], list] = {}
  params: dict[str, Any] = {}
  notes = []
  for name, (path, is_linear) in names.items():
    layer_idx = path[-1] if isinstance(path[-1], int) else None
    tree_path = path[:-1] if layer_idx is not None else path
    want = _get(shapes, tree_path).shape
    want = want[1:] if layer_idx is not None else want
    want_hf = tuple(reversed(want)) if is_linear else tuple(want)
    if name not in tensors:
      if name.startswith("pooler."):
        notes.append(f"{name} not in checkpoint: pooler initialised fresh")
        continue
      raise ClowlabError(
          f"clowlab: {weights_file} lacks tensor {name} (expected shape {want_hf} for "
          f"{cfg_path}). The checkpoint does not match its config.json; re-save it with "
          "save_pretrained() or fix the config.")
    t = np.asarray(tensors.pop(name))
    if t.shape != want_hf:
      raise ClowlabError(
          f"clowlab: tensor {name} in {weights_file} has shape {t.shape}, expected {want_hf} "
          f"from {cfg_path}. The checkpoint does not match its config.json.")
    t = (t.T if is_linear else t).astype(np.float32)
    if layer_idx is None:
      _set(params, tree_path, t)
    else:
      stacked.setdefault(tree_path, [None] * cfg.num_layers)[layer_idx] = t
  for tree_path, per_layer in stacked.items():
    _set(params, tree_path, np.stack(per_layer))
  if "pooler" not in params:
    D = cfg.hidden_size
    rng = np.random.default_rng(0)
    params["pooler"] = {"kernel": (cfg.initializer_range * rng.standard_normal((D, D))
                                   ).astype(np.float32), "bias": np.zeros((D,), np.float32)}

  mlm_head = None
  mlm = _mlm_names(cfg.model_type)
  present = [k for k in mlm if k in tensors]
  if present:
    missing = [k for k in mlm if k not in tensors]
    if missing:
      raise ClowlabError(f"clowlab: {weights_file} has a partial MLM head: {missing} missing.")
    mlm_head = {}
    D, V = cfg.hidden_size, cfg.vocab_size
    for name, (path, is_linear) in mlm.items():
      t = np.asarray(tensors.pop(name))
      want_hf = {"bias": (V,)}.get(path[0], (D, D) if path[-1] == "kernel" else (D,))
      if t.shape != want_hf:
        raise ClowlabError(f"clowlab: tensor {name} in {weights_file} has shape {t.shape}, "
                           f"expected {want_hf}.")
      _set(mlm_head, path, (t.T if is_linear else t).astype(np.float32))
  leftover = sorted(k for k in tensors if not _IGNORED.search(k))
  if leftover:
    notes.append(f"ignored {len(leftover)} tensors not used by the encoder: {leftover[:5]}")
  for n in notes:
    logging.info("clowlab import %s: %s", d, n)
  return HFModel(cfg, params, mlm_head, notes)


# ---------------------------------------------------------------------------------------------
# Export


def to_hf_tensors(params, cfg: enc.EncoderConfig, mlm_head=None) -> dict[str, np.ndarray]:
  """clowlab params -> HF state dict (BertModel naming, or *ForMaskedLM naming with a head)."""
  prefix = _BASE_PREFIX[cfg.model_type] if mlm_head is not None else ""
  out = {}
  for name, (path, is_linear) in _hf_names(cfg).items():
    if mlm_head is not None and name.startswith("pooler."):
      continue  # *ForMaskedLM has no pooler
    layer_idx = path[-1] if isinstance(path[-1], int) else None
    t = np.asarray(_get(params, path[:-1] if layer_idx is not None else path), np.float32)
    t = t[layer_idx] if layer_idx is not None else t
    out[prefix + name] = np.ascontiguousarray(t.T if is_linear else t)
  if mlm_head is not None:
    for name, (path, is_linear) in _mlm_names(cfg.model_type).items():
      t = np.asarray(_get(mlm_head, path), np.float32)
      out[name] = np.ascontiguousarray(t.T if is_linear else t)
  return out


def save_hf(out_dir: str | os.PathLike, params, cfg: enc.EncoderConfig, *, mlm_head=None,
            tokenizer_dir: str | os.PathLike | None = None, overwrite: bool = False,
            extra_files: dict[str, bytes] | None = None) -> str:
  """Writes an HF directory atomically: built in a temporary sibling, then renamed into place.

  extra_files: {relative path: content} written alongside (e.g. a sentence pooler's weights).
  """
  out = pathlib.Path(out_dir)
  if out.exists() and any(out.iterdir()) and not overwrite:
    raise ClowlabError(f"clowlab: export directory {out} exists and is not empty. Choose a new "
                       "--out directory (clowlab never overwrites a model directory in place).")
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
  try:
    save_file(to_hf_tensors(params, cfg, mlm_head), str(tmp / "model.safetensors"),
              metadata={"format": "pt"})
    (tmp / "config.json").write_text(json.dumps(config_to_hf(cfg, mlm_head is not None),
                                                indent=2, sort_keys=True) + "\n")
    if tokenizer_dir is not None and not copy_tokenizer_files(tokenizer_dir, tmp):
      # A raw sentencepiece tokenizer (trained by clowlab): write it as HF tokenizer files.
      from clowlab.data import tokenizers  # noqa: PLC0415
      tokenizers.load_tokenizer(str(tokenizer_dir)).save(str(tmp))
    for name, content in (extra_files or {}).items():
      (tmp / name).parent.mkdir(parents=True, exist_ok=True)
      (tmp / name).write_bytes(content)
    if out.exists():
      shutil.rmtree(out)
    os.replace(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return str(out)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "sentencepiece.bpe.model", "spiece.model", "vocab.json",
                   "merges.txt", "added_tokens.json")


def copy_tokenizer_files(src_dir: str | os.PathLike, dst_dir: str | os.PathLike) -> list[str]:
  """Copies the HF tokenizer files found in src_dir; returns their names."""
  src, dst = pathlib.Path(src_dir), pathlib.Path(dst_dir)
  dst.mkdir(parents=True, exist_ok=True)
  copied = []
  for name in TOKENIZER_FILES:
    if (src / name).exists():
      shutil.copy2(src / name, dst / name)
      copied.append(name)
  return copied
