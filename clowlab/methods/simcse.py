"""SimCSE (Gao et al., 2021): contrastive sentence embeddings, unsupervised and supervised.

unsup: each sentence of the global batch is encoded twice in one forward pass of 2B rows; the
       dropout masks differ per row, so the two copies are the positive pair and the other 2B-2
       rows' copies are in-batch negatives (gathered over all devices by the loss).
sup:   (anchor, positive, hard negative) triples (SimCSE's NLI: premise, entailment,
       contradiction) in one pass of 3B rows; candidates are all positives and all hard
       negatives of the global batch; `hard_negative_weight` is added to each row's own
       hard-negative logit (SimCSE's option, default 0). Pairs data (no hard negative) also works.

The sentence vector is `pooler` (cls, cls_before_pooler, mean, first_last_avg, last_two_avg,
or layer_attention: LAYER_ATTENTION_METHOD below), then optionally an MLP (dense D_in -> D
+ tanh, freshly initialised as in SimCSE) with `mlp`: "train_only" (SimCSE unsup: the MLP shapes
the loss, evaluation uses the raw pooler output), "always" (SimCSE sup; layer attention) or
"none". Loss: InfoNCE over cosine / temperature (0.05).

Config block `contrastive` (shared with layer_attention): objective, pooler, mlp, temperature,
hard_negative_weight, symmetric, label_smoothing, impl (sharded | global | chunked), chunk_size,
rrelu_lower/upper. Data: `data.train` (text files for unsup; a CSV/TSV/JSONL of triples or
pairs for sup, `data.columns` naming them). Evaluation: `eval.sts`, a list of
{name, path, columns} STS files, Spearman x 100 (the "sts" evaluator, evaluators/sts.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from clowlab.data import pipeline, sources
from clowlab.errors import ClowlabError
from clowlab.losses import contrastive
from clowlab.methods import mlm
from clowlab.methods.base import DataContext, Method, text_spec
from clowlab.models import encoder as enc
from clowlab.models import heads, poolers

OBJECTIVES = ("unsup", "sup")
MLP_MODES = ("train_only", "always", "none")
LAYER_ATTENTION = "layer_attention"


def settings(cfg):
  """The `contrastive` config block, checked (errors name the key and the valid values)."""
  c = cfg.contrastive
  if c.objective not in OBJECTIVES:
    raise ClowlabError(f"clowlab: contrastive.objective={c.objective!r}; valid: "
                       f"{', '.join(OBJECTIVES)}.")
  if c.mlp not in MLP_MODES:
    raise ClowlabError(f"clowlab: contrastive.mlp={c.mlp!r}; valid: {', '.join(MLP_MODES)}.")
  poolers.check_pooler(c.pooler, (LAYER_ATTENTION,))
  if not c.temperature > 0:
    raise ClowlabError(f"clowlab: contrastive.temperature must be > 0, got {c.temperature}.")
  return c


def pooled_dim(ecfg: enc.EncoderConfig, c) -> int:
  return 2 * ecfg.hidden_size if c.pooler == LAYER_ATTENTION else ecfg.hidden_size


def init_heads(rng, ecfg: enc.EncoderConfig, cfg):
  c = settings(cfg)
  k_mlp, k_att = jax.random.split(rng)
  out = {}
  if c.mlp != "none":
    out["mlp"] = heads.init_projection(k_mlp, (pooled_dim(ecfg, c), ecfg.hidden_size),
                                       ecfg.initializer_range)
  if c.pooler == LAYER_ATTENTION:
    out[LAYER_ATTENTION] = poolers.init_layer_attention(k_att, ecfg.hidden_size,
                                                        ecfg.initializer_range)
  return out


def represent(params, out: enc.EncoderOutput, mask_BL, rng, train: bool, c):
  """Sentence vectors (float32) from encoder outputs: pooler, then the MLP when it applies."""
  if c.pooler == LAYER_ATTENTION:
    x_BD = poolers.layer_attention(params[LAYER_ATTENTION], out, mask_BL, rng, train,
                                   (c.rrelu_lower, c.rrelu_upper))
  else:
    x_BD = poolers.pool(out, mask_BL, c.pooler, params["encoder"])
  if c.mlp == "always" or (c.mlp == "train_only" and train):
    x_BD = heads.projection(params["mlp"], x_BD, "tanh", final_activation=True)
  return x_BD


def embed(params, batch, ecfg: enc.EncoderConfig, cfg):
  c = settings(cfg)
  out = enc.encode(params["encoder"], batch["input_ids"], batch["attention_mask"],
                   batch["token_type_ids"], cfg=ecfg)
  return represent(params, out, batch["attention_mask"], None, False, c)


def _views(batch, c) -> list[dict]:
  keys = ("input_ids", "attention_mask", "token_type_ids")
  if c.objective == "unsup":
    v = {k: batch[k] for k in keys}
    return [v, v]
  names = [n for n in ("a", "b", "c") if n in batch]
  if names[:2] != ["a", "b"]:
    raise ClowlabError("clowlab: supervised SimCSE needs pairs or triples data (views a, b[, c]).")
  return [{k: batch[n][k] for k in keys} for n in names]


def loss(params, state, batch, rng, ecfg: enc.EncoderConfig, cfg):
  c = settings(cfg)
  views = _views(batch, c)
  cat = lambda k: jnp.concatenate([v[k] for v in views], axis=0)  # noqa: E731
  ids, mask, types = cat("input_ids"), cat("attention_mask"), cat("token_type_ids")
  r_enc, r_pool = jax.random.split(rng)
  # One pass over all views: the rows get different dropout masks (unsup's positive pairs).
  out = enc.encode(params["encoder"], ids, mask, types, r_enc, True, cfg=ecfg)
  z = represent(params, out, mask, r_pool, True, c)
  parts = jnp.split(z, len(views))
  value, m = contrastive.info_nce_by_name(
      parts[0], parts[1], hard_negatives_BD=parts[2] if len(parts) > 2 else None,
      impl=c.impl, chunk_size=c.chunk_size, temperature=c.temperature,
      symmetric=c.symmetric, label_smoothing=c.label_smoothing,
      hard_negative_weight=c.hard_negative_weight)
  metrics = {f"cl_{k}": v for k, v in m.items() if k != "loss"}
  return value, metrics, state


def make_data(cfg, ctx: DataContext):
  c = settings(cfg)
  if c.objective == "unsup":
    ds = mlm.text_dataset(cfg, ctx)
  else:
    files = list(cfg.data.train)
    cols = list(cfg.data.get("columns", []) or []) or None
    if cols is None or len(cols) == 3:
      try:
        ds = sources.load_triples(files, columns=cols, cache_dir=ctx.cache_dir)
      except ClowlabError:
        if cols is not None:
          raise
        ds = sources.load_pairs(files, cache_dir=ctx.cache_dir)
    else:
      ds = sources.load_pairs(files, columns=cols, cache_dir=ctx.cache_dir)
    ds = ds.remove_columns([k for k in ds.column_names if k == "label"])
  tok_ds = pipeline.tokenize(ds, ctx.tokenizer, seq_len=cfg.seq_len, cache_dir=ctx.cache_dir)
  return pipeline.make_loader(tok_ds, global_batch_size=cfg.batch_size, seed=cfg.seed,
                              process_index=ctx.process_index, process_count=ctx.process_count)


def batch_spec(cfg, ecfg: enc.EncoderConfig):
  c = settings(cfg)
  if c.objective == "unsup":
    return text_spec(cfg.batch_size, cfg.seq_len)
  # Supervised: views a, b (+ c, the hard negative, unless data.columns names only a pair).
  cols = list(cfg.data.get("columns", []) or [])
  views = ("a", "b") if len(cols) == 2 else ("a", "b", "c")
  view = text_spec(cfg.batch_size, cfg.seq_len, index=False)
  return {**{v: view for v in views}, "index": text_spec(cfg.batch_size, 1)["index"]}


def evals(cfg, cache_dir: str) -> dict:
  """Default evaluation: STS of the method's embedding on config.eval.sts ({name, path,
  columns} each)."""
  sets = list(cfg.get("eval", {}).get("sts", []) or [])
  return {"sts": {"type": "sts", "sets": sets}} if sets else {}


def export_pooler(params, cfg):
  """What an HF export needs beside the encoder to embed as this method evaluates."""
  c = settings(cfg)
  block = {k: c[k] for k in c.keys()}
  head = {k: params[k] for k in ("mlp", LAYER_ATTENTION) if k in params}
  return {"method": cfg.method, "contrastive": block}, head


def make_method(name: str) -> Method:
  return Method(name=name, init_heads=init_heads, loss=loss, make_data=make_data,
                evals=evals, passes_per_example=2, embed=embed,
                export_pooler=export_pooler, batch_spec=batch_spec)


METHOD = make_method("simcse")
# Contrastive learning with layer-wise attention pooling (Oh et al., COLING 2022): the same
# objectives with the sentence vector taken from every layer (`contrastive.pooler=
# layer_attention`, models/poolers.py): for each of the N = L + 1 encoder outputs, its CLS vector
# is a query and its masked mean a key/value (bias-free dense + RReLU), each query attends over
# the N layers (scores / N), the attended vectors are averaged, concatenated to the last layer's
# CLS and mapped back to D by a dense + tanh MLP, in training and at evaluation alike.
# configs/layer_attention.py; what matches the authors' LayerAttPooler and where clowlab
# differs: docs/methods/layer_attention.md.
LAYER_ATTENTION_METHOD = make_method(LAYER_ATTENTION)
