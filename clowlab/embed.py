"""Sentence embeddings from any model clowlab can read.

    emb = clowlab.embed.load("runs/simcse")            # a clowlab workdir (latest checkpoint)
    emb = clowlab.embed.load("exported/", pooling="mean")   # or an HF directory
    x_ND = emb(["a sentence", "another one"])          # numpy float32, one row per text
    m = clowlab.embed.load_model("runs/simcse")        # params, EncoderConfig, tokenizer only

Pooling: a workdir or an exported directory trained by a sentence-embedding method embeds the
way that method does at evaluation (its pooler and head, e.g. layer-wise attention + MLP);
`pooling=` overrides it with a parameter-free pooler (cls, cls_before_pooler, mean,
first_last_avg, last_two_avg). A plain HF directory defaults to mean pooling. `layer=K` pools
one layer instead (0 = embeddings, -1 = last; `pooling` mean, the default, or cls = its raw CLS
vector), whatever the method's pooler.

Speed: texts are sorted by length, cut into batches of `batch_size`, and each batch is padded
to a multiple of `pad_to` tokens, so the jitted function sees few distinct shapes and little
padding; the result comes back in the input order.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc
from clowlab.models import poolers

# Written next to an exported HF model by sentence-embedding methods (see convert/workdir.py).
POOLER_CONFIG = "clowlab_pooler.json"
POOLER_WEIGHTS = "clowlab_pooler.safetensors"


@dataclasses.dataclass
class Embedder:
  """texts -> float32 vectors. `fn(batch) -> x_BD` takes a padded numpy batch
  {input_ids, attention_mask, token_type_ids}."""
  tokenizer: Any
  fn: Callable[[dict], Any]
  seq_len: int = 128
  batch_size: int = 64
  pad_to: int = 16
  description: str = ""

  def batches(self, texts: Sequence[str]):
    """(positions in `texts`, padded batch) in length order; the last batch is filled with
    empty strings so every batch has batch_size rows (fewer shapes to compile)."""
    enc_ = self.tokenizer.encode(list(texts), max_len=self.seq_len)
    ids, types = enc_["input_ids"], enc_["token_type_ids"]
    lengths = np.array([len(r) for r in ids], np.int64)
    order = np.argsort(-lengths, kind="stable")
    B = self.batch_size
    for start in range(0, len(order), B):
      pos = order[start:start + B]
      longest = int(lengths[pos].max()) if len(pos) else 1
      L = min(self.seq_len, -(-max(longest, 1) // self.pad_to) * self.pad_to)
      input_ids = np.full((B, L), self.tokenizer.pad_id, np.int32)
      type_ids = np.zeros((B, L), np.int32)
      mask = np.zeros((B, L), np.int32)
      for row, i in enumerate(pos):
        n = lengths[i]
        input_ids[row, :n], type_ids[row, :n], mask[row, :n] = ids[i], types[i], 1
      mask[len(pos):, 0] = 1  # filler rows: one token so no row is all padding
      yield pos, {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": type_ids}

  def __call__(self, texts: Sequence[str]) -> np.ndarray:
    texts = list(texts)
    out, pending = None, []
    for pos, batch in self.batches(texts):
      pending.append((pos, self.fn(batch)))  # dispatch ahead; fetch below
      if len(pending) > 2:
        out = _store(out, *pending.pop(0), len(texts))
    for p in pending:
      out = _store(out, *p, len(texts))
    return out if out is not None else np.zeros((0, 0), np.float32)


def _store(out, pos, x_BD, n):
  x_BD = np.asarray(x_BD, np.float32)
  if out is None:
    out = np.zeros((n, x_BD.shape[-1]), np.float32)
  out[pos] = x_BD[:len(pos)]
  return out


def pooled_fn(params, ecfg: enc.EncoderConfig, pooling: str = "mean",
              layer: int | None = None) -> Callable[[dict], Any]:
  """A jitted batch -> vectors function with a parameter-free pooler over encoder params.

  layer: pool this entry of hidden_states_NBLD instead (poolers.pool_layer; 0 = embeddings,
  -1 = last) with pooling "mean" or "cls" (the raw CLS vector; "cls_before_pooler" is a synonym).
  """
  if layer is None:
    poolers.check_pooler(pooling)
  else:
    pooling = "cls" if pooling == "cls_before_pooler" else pooling
    layer = poolers.check_layer(pooling, layer, ecfg.num_layers + 1) % (ecfg.num_layers + 1)
    # Layers above the pooled one do not run.
    params, ecfg = enc.truncate(params, ecfg, layer)

  @jax.jit
  def fn(p, batch):
    out = enc.encode(p, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                     cfg=ecfg)
    if layer is not None:
      return poolers.pool_layer(out, batch["attention_mask"], pooling, layer)
    return poolers.pool(out, batch["attention_mask"], pooling, p)

  return lambda batch: fn(params, batch)


def method_fn(method, params, ecfg: enc.EncoderConfig, cfg) -> Callable[[dict], Any]:
  """A jitted batch -> vectors function that embeds as `method.embed` does."""
  fn = jax.jit(lambda p, b: method.embed(p, b, ecfg, cfg))
  return lambda batch: fn(params, batch)


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


def load_model(model: str | os.PathLike) -> LoadedModel:
  """Params, EncoderConfig and tokenizer of a clowlab workdir (latest checkpoint) or an HF model
  directory (with an exported sentence pooler, if any); the tokenizer must match the vocabulary."""
  from clowlab import checkpoint  # noqa: PLC0415
  from clowlab.convert import hf, workdir  # noqa: PLC0415
  from clowlab.data import tokenizers  # noqa: PLC0415
  path = pathlib.Path(model)
  if not path.exists():
    raise ClowlabError(f"clowlab: model {path} does not exist; pass an HF model directory or a "
                       "clowlab workdir.")
  if checkpoint.checkpoint_dir(path).is_dir():
    params, ecfg, meta, step = workdir.load_workdir(path)
    tokenizer = tokenizers.load_tokenizer(str(path / (meta.get("tokenizer") or "tokenizer")))
    run_cfg = meta.get("config") or {}
    what = f"{path} (clowlab checkpoint, step {step})"
  else:
    m = hf.load_hf(path)
    ecfg, params = m.cfg, {"encoder": m.params}
    tokenizer = tokenizers.load_tokenizer(str(path))
    run_cfg = {}
    if (path / POOLER_CONFIG).exists():
      from safetensors.numpy import load_file  # noqa: PLC0415
      run_cfg = json.loads((path / POOLER_CONFIG).read_text())
      if (path / POOLER_WEIGHTS).exists():
        params.update(unflatten(load_file(str(path / POOLER_WEIGHTS))))
    what = f"{path} (HF {ecfg.model_type})"
  tokenizers.check_vocab_matches(tokenizer, ecfg.vocab_size, str(path))
  return LoadedModel(params, ecfg, tokenizer, run_cfg, what, path)


def load(model: str | os.PathLike, pooling: str | None = None, *, layer: int | None = None,
         seq_len: int = 128, batch_size: int = 64, pad_to: int = 16) -> Embedder:
  """An Embedder for a clowlab workdir or an HF model directory (see the module doc).

  layer: embed with one layer's mean (default) or raw CLS vector (`pooling="cls"`); overrides
  the trained method's pooler.
  """
  from clowlab import methods  # noqa: PLC0415
  m = load_model(model)
  run_cfg, what = m.run_cfg, m.description
  # Inference: unrolled layers let XLA drop the per-layer outputs a pooler does not read.
  ecfg = m.ecfg.replace(scan_layers=False)
  params = jax.device_put(m.params)
  method = methods.get(run_cfg["method"]) if run_cfg.get("method") else None
  if layer is not None:
    pooling = pooling or "mean"
    fn = pooled_fn(params["encoder"], ecfg, pooling, layer)
    what += f", {pooling} pooling of layer {layer}"
  elif pooling is None and method is not None and method.embed is not None:
    import ml_collections  # noqa: PLC0415
    fn = method_fn(method, params, ecfg, ml_collections.ConfigDict(run_cfg))
    what += f", {method.name} pooling"
  else:
    pooling = pooling or "mean"
    fn = pooled_fn(params["encoder"], ecfg, pooling)
    what += f", {pooling} pooling"
  seq_len = min(seq_len, ecfg.max_position_embeddings - ecfg.position_offset)
  return Embedder(m.tokenizer, fn, seq_len=seq_len, batch_size=batch_size, pad_to=pad_to,
                  description=what)


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
