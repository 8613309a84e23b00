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

Batching and padding: clowlab.models.embedder (Embedder, pooled_fn, method_fn; re-exported
here).
"""
from __future__ import annotations

import os

import jax

from clowlab.convert import loading
# The files an exported sentence model carries beside the encoder (written by convert/workdir.py).
from clowlab.convert.loading import POOLER_CONFIG, POOLER_WEIGHTS, flatten, unflatten  # noqa: F401
from clowlab.models.embedder import Embedder, method_fn, pooled_fn  # noqa: F401 - public API


# Model loading has one home, clowlab/convert/loading.py; its LoadedModel and load_model are this
# module's public API too.
LoadedModel, load_model = loading.LoadedModel, loading.load_model


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
