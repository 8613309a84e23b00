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
import math
import os
import pathlib
import re
import shutil
import tempfile
from typing import Any

import ml_dtypes
import numpy as np
from safetensors import SafetensorError
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


_FIX_CONFIG = ("Fix it in config.json (save_pretrained() writes a valid one) or re-download the "
               "model directory.")


def _int_key(hf: dict[str, Any], key: str, source: str, default: Any = None, *,
             minimum: int = 1) -> int:
  """hf[key] (or default) as an int >= minimum; ClowlabError naming the key otherwise."""
  v = hf.get(key, default) if default is not None else hf[key]
  if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
    kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    raise ClowlabError(f"clowlab: {source} has {key}={v!r} ({type(v).__name__}); it must be "
                       f"{kind}. {_FIX_CONFIG}")
  return v


def _float_key(hf: dict[str, Any], key: str, source: str, default: float, lo: float,
               hi: float | None = None) -> float:
  """hf[key] (or default) as a float in [lo, hi) (lo < value when lo > 0)."""
  v = hf.get(key, default)
  if v is None:
    v = default
  ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
  ok = ok and (v > lo if lo > 0 else v >= lo) and (hi is None or v < hi)
  if not ok:
    rng = f"in [{lo}, {hi})" if hi is not None else (f"> {lo}" if lo > 0 else f">= {lo}")
    raise ClowlabError(f"clowlab: {source} has {key}={v!r}; it must be a number {rng}. "
                       f"{_FIX_CONFIG}")
  return float(v)


def config_from_hf(hf: dict[str, Any], source: str) -> enc.EncoderConfig:
  if not isinstance(hf, dict):
    raise ClowlabError(f"clowlab: {source} holds a JSON {type(hf).__name__}, not an object of "
                       "config keys. Point at an HF model directory whose config.json was "
                       "written by save_pretrained().")
  model_type = hf.get("model_type")
  if not isinstance(model_type, str) or model_type not in SUPPORTED:
    raise ClowlabError(
        f"clowlab: {source} has model_type={model_type!r}; clowlab imports "
        f"{', '.join(sorted(SUPPORTED))}. Convert a BERT, RoBERTa or XLM-R checkpoint.")
  pos_type = hf.get("position_embedding_type")
  pos_type = "absolute" if pos_type is None else pos_type
  if pos_type != "absolute":
    raise ClowlabError(f"clowlab: {source} has position_embedding_type={pos_type!r}; only "
                       "'absolute' position embeddings are supported. Convert a checkpoint that "
                       "uses absolute position embeddings.")
  required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "intermediate_size")
  missing = [k for k in required if k not in hf]
  if missing:
    raise ClowlabError(f"clowlab: {source} lacks {missing}; an HF BERT-family config.json "
                       f"must name them. {_FIX_CONFIG}")
  sizes = {k: _int_key(hf, k, source) for k in required}
  max_pos = _int_key(hf, "max_position_embeddings", source, 512)
  type_vocab = _int_key(hf, "type_vocab_size", source, 2)
  if sizes["hidden_size"] % sizes["num_attention_heads"]:
    raise ClowlabError(
        f"clowlab: {source} has hidden_size={sizes['hidden_size']}, which "
        f"num_attention_heads={sizes['num_attention_heads']} does not divide. {_FIX_CONFIG}")
  pad = hf.get("pad_token_id")
  if pad is None:
    pad = 0 if model_type == "bert" else 1
  pad = _int_key({"pad_token_id": pad}, "pad_token_id", source, minimum=0)
  if pad >= sizes["vocab_size"]:
    raise ClowlabError(f"clowlab: {source} has pad_token_id={pad}, outside its "
                       f"vocab_size={sizes['vocab_size']}. {_FIX_CONFIG}")
  if model_type != "bert" and max_pos <= pad + 1:
    raise ClowlabError(f"clowlab: {source} has max_position_embeddings={max_pos}, but "
                       f"{model_type} numbers positions from pad_token_id + 1 = {pad + 1}. "
                       f"{_FIX_CONFIG}")
  act = hf.get("hidden_act", "gelu")
  if not isinstance(act, str) or act not in enc.ACTIVATIONS:
    raise ClowlabError(f"clowlab: {source} has hidden_act={act!r}; clowlab supports "
                       f"{', '.join(sorted(enc.ACTIVATIONS))}. {_FIX_CONFIG}")
  floats = dict(
      layer_norm_eps=_float_key(hf, "layer_norm_eps", source, 1e-12, 0.0),
      hidden_dropout=_float_key(hf, "hidden_dropout_prob", source, 0.1, 0.0, 1.0),
      attention_dropout=_float_key(hf, "attention_probs_dropout_prob", source, 0.1, 0.0, 1.0),
      initializer_range=_float_key(hf, "initializer_range", source, 0.02, 0.0))
  try:
    return enc.EncoderConfig(
        vocab_size=sizes["vocab_size"], hidden_size=sizes["hidden_size"],
        num_layers=sizes["num_hidden_layers"], num_heads=sizes["num_attention_heads"],
        intermediate_size=sizes["intermediate_size"], max_position_embeddings=max_pos,
        type_vocab_size=type_vocab, position_offset=0 if model_type == "bert" else pad + 1,
        pad_token_id=pad, activation=act, model_type=model_type, **floats)
  except ClowlabError as e:  # a check of EncoderConfig's own: say which file it came from
    raise ClowlabError(f"clowlab: {source}: {str(e).removeprefix('clowlab: ')} "
                       f"{_FIX_CONFIG}") from e


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


_RESAVE = ("Re-save the model with save_pretrained() or copy the checkpoint directory again "
           "(a download or copy may have been cut short).")


def _load_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
  try:
    return load_file(str(path))
  except (SafetensorError, OSError, ValueError, TypeError) as e:
    raise ClowlabError(f"clowlab: {path} is not a readable safetensors file ({e}). "
                       f"{_RESAVE}") from e


def _read_index(index: pathlib.Path) -> list[str]:
  """The shard file names a model.safetensors.index.json names."""
  try:
    weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    shards = sorted(set(weight_map.values()))
    if not all(isinstance(s, str) and s for s in shards):
      raise TypeError("a shard name is not a file name")
  except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
          AttributeError) as e:
    why = f"no key {e}" if isinstance(e, KeyError) else str(e)
    raise ClowlabError(f"clowlab: {index} is not a valid safetensors index (it must be a JSON "
                       f"object whose 'weight_map' maps tensor names to shard files; {why}). "
                       f"{_RESAVE}") from e
  return shards


def _read_torch_bin(pt: pathlib.Path) -> dict[str, np.ndarray]:
  try:
    import torch  # noqa: PLC0415 - optional, only for .bin checkpoints
  except ImportError as e:
    raise ClowlabError(f"clowlab: {pt} is a PyTorch pickle and reading it needs torch. "
                       "Install torch (CPU build is enough) or save the model as "
                       "model.safetensors.") from e
  try:
    sd = torch.load(str(pt), map_location="cpu", weights_only=True)
  except Exception as e:  # noqa: BLE001 - pickle/zip/EOF errors: any failure here is the file's
    raise ClowlabError(f"clowlab: {pt} is not a readable PyTorch state dict "
                       f"({type(e).__name__}: {str(e)[:200]}). {_RESAVE}") from e
  if not isinstance(sd, dict) or not all(
      isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
    raise ClowlabError(f"clowlab: {pt} does not hold a state dict of named tensors "
                       f"(got {type(sd).__name__}). Save the model with save_pretrained().")
  return {k: v.detach().to(torch.float32 if v.is_floating_point() else v.dtype).numpy()
          for k, v in sd.items()}


def _read_tensors(d: pathlib.Path) -> tuple[dict[str, np.ndarray], str]:
  st, index, pt = d / "model.safetensors", d / "model.safetensors.index.json", d / "pytorch_model.bin"
  if st.exists():
    return _load_safetensors(st), str(st)
  if index.exists():
    out = {}
    for shard in _read_index(index):
      if not (d / shard).is_file():
        raise ClowlabError(f"clowlab: {index} names shard {shard} but {d / shard} is missing. "
                           "Copy the complete checkpoint directory.")
      out.update(_load_safetensors(d / shard))
    return out, str(index)
  if pt.exists():
    return _read_torch_bin(pt), str(pt)
  raise ClowlabError(f"clowlab: no weights in {d}: looked for model.safetensors, "
                     "model.safetensors.index.json and pytorch_model.bin. Point at an HF model "
                     "directory saved with save_pretrained().")


def _is_float(dtype: np.dtype) -> bool:
  """float16/32/64 and ml_dtypes' bfloat16 / float8 (safetensors' BF16, F8_*)."""
  if dtype.kind != "V":
    return dtype.kind == "f"
  try:
    ml_dtypes.finfo(dtype)
  except (TypeError, ValueError):
    return False
  return True


def _set(tree, path, value):
  *parents, leaf = path
  for p in parents:
    tree = tree.setdefault(p, {})
  tree[leaf] = value


def _get(tree, path):
  for p in path:
    tree = tree[p]
  return tree


_MISMATCH = ("The weights do not match config.json: fix config.json or re-save the model with "
             "save_pretrained().")
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.")


def _shape_keys(name: str, cfg: enc.EncoderConfig) -> str:
  """The config.json keys a tensor's expected shape comes from, with their values."""
  rules = ((r"word_embeddings|predictions\.bias$|lm_head\.bias$", "vocab_size"),
           (r"position_embeddings", "max_position_embeddings"),
           (r"token_type_embeddings", "type_vocab_size"),
           (r"intermediate\.dense|layer\.\d+\.output\.dense\.weight$", "intermediate_size"))
  keys = [k for pattern, k in rules if re.search(pattern, name)][:1]
  if not re.search(r"predictions\.bias$|lm_head\.bias$|intermediate\.dense\.bias$", name):
    keys.append("hidden_size")
  hf_value = {"vocab_size": cfg.vocab_size, "type_vocab_size": cfg.type_vocab_size,
              "max_position_embeddings": cfg.max_position_embeddings,
              "intermediate_size": cfg.intermediate_size, "hidden_size": cfg.hidden_size}
  return ", ".join(f"{k}={hf_value[k]}" for k in keys)


def _checked(name: str, t: Any, want_hf: tuple[int, ...], weights_file: str, cfg_path,
             cfg: enc.EncoderConfig) -> np.ndarray:
  """The tensor as a numpy array after the shape and dtype checks."""
  t = np.asarray(t)
  if t.shape != want_hf:
    raise ClowlabError(
        f"clowlab: tensor {name} in {weights_file} has shape {t.shape}, expected {want_hf} "
        f"from {cfg_path} ({_shape_keys(name, cfg)}). {_MISMATCH}")
  if not _is_float(t.dtype):
    raise ClowlabError(
        f"clowlab: tensor {name} in {weights_file} has dtype {t.dtype}; weights must be floating "
        "point (float32, float16 or bfloat16). Re-save the model with save_pretrained() from its "
        "float weights.")
  return t


def load_hf(hf_dir: str | os.PathLike) -> HFModel:
  """Reads an HF BERT/RoBERTa/XLM-R directory into clowlab params (float32).

  Anything wrong with the directory (config.json, the weight files, a tensor's name, shape or
  dtype) raises ClowlabError naming the file and the key or tensor, before any array is built.
  """
  d = pathlib.Path(hf_dir)
  if not d.is_dir():
    raise ClowlabError(f"clowlab: HF model directory {d} does not exist. Pass a local directory "
                       "with config.json and model.safetensors (model hubs are not used).")
  cfg_path = d / "config.json"
  if not cfg_path.is_file():
    raise ClowlabError(f"clowlab: {cfg_path} is missing. An HF model directory needs "
                       "config.json next to its weights; copy the one saved with the model.")
  try:
    hf_cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
    raise ClowlabError(f"clowlab: {cfg_path} is not valid JSON ({e}). {_FIX_CONFIG}") from e
  cfg = config_from_hf(hf_cfg, str(cfg_path))
  raw, weights_file = _read_tensors(d)
  tensors: dict[str, Any] = {}
  for k, v in raw.items():
    name = _normalise(k, cfg.model_type)
    if name in tensors:
      raise ClowlabError(f"clowlab: {weights_file} holds two tensors for {name} (one of them "
                         f"{k}). {_RESAVE}")
    tensors[name] = v
  # Layer count first: a config.json saying more (or fewer) layers than the weights hold is
  # named as such (and a huge num_hidden_layers is not expanded into tensor names).
  layers = sorted({int(m.group(1)) for k in tensors if (m := _LAYER.match(k))})
  n_found = layers[-1] + 1 if layers else 0
  if n_found != cfg.num_layers:
    raise ClowlabError(
        f"clowlab: {cfg_path} says num_hidden_layers={cfg.num_layers} but {weights_file} holds "
        + (f"tensors for {n_found} encoder layers (encoder.layer.0..{n_found - 1}). "
           if n_found else "no encoder.layer.* tensors. ") + _MISMATCH)

  shapes = enc.param_shapes(cfg)
  names = _hf_names(cfg)
  stacked: dict[tuple[str, ...], list] = {}
  params: dict[str, Any] = {}
  notes = []
  pooler = [n for n in names if n.startswith("pooler.")]
  if any(n in tensors for n in pooler) and not all(n in tensors for n in pooler):
    raise ClowlabError(
        f"clowlab: {weights_file} has a partial pooler: {[n for n in pooler if n not in tensors]} "
        f"missing. {_RESAVE}")
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
    t = _checked(name, tensors.pop(name), want_hf, weights_file, cfg_path, cfg)
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
      raise ClowlabError(f"clowlab: {weights_file} has a partial MLM head: {missing} missing. "
                         f"{_RESAVE}")
    mlm_head = {}
    D, V = cfg.hidden_size, cfg.vocab_size
    for name, (path, is_linear) in mlm.items():
      want_hf = {"bias": (V,)}.get(path[0], (D, D) if path[-1] == "kernel" else (D,))
      t = _checked(name, tensors.pop(name), want_hf, weights_file, cfg_path, cfg)
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
