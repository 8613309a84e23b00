"""BERT-flow (Li et al., EMNLP 2020): a normalizing flow, trained by maximum likelihood on
unlabeled sentences, maps a frozen encoder's sentence embeddings to an isotropic Gaussian; the
latent z is the sentence vector. BERT-whitening (methods/whitening.py) is fitted on the same
sentences as the closed-form baseline, and both are evaluated side by side.

Params: {"encoder" (frozen), "flow", "flow_const" (frozen: fixed permutations), "whitening"
(frozen: fitted once)}. Only "flow" is trained (AdamW, lr 1e-3 as the authors).

Data: the sentences of `data.train` (text files, one per line) plus, with
`data.from_eval_sts`, every sentence of the `eval.sts` sets without their scores (the paper's
unsupervised setting, which fits the flow on the STS sentences themselves). With
`flow.features = "cached"` (default) the frozen encoder embeds each sentence once, the vectors
are cached on disk (keyed by the encoder weights, pooler, seq_len and sentences), and training
steps only run the flow; "recompute" feeds tokens and runs the frozen encoder in every step.

Config block `flow`: pooler (first_last_avg | last_two_avg | mean | cls | cls_before_pooler),
levels, depth, coupling, width, permutation, logscale_factor (models/flow.py), features,
whitening_dims (dims the whitening baseline keeps in the evaluation table; 0 = all), embed
(what the exported model returns: flow | whitening | raw) and embed_whitening_dim.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from clowlab.data import pipeline, sources
from clowlab.errors import ClowlabError
from clowlab.methods import mlm, whitening
from clowlab.methods.base import DataContext, Method, text_spec
from clowlab.models import encoder as enc
from clowlab.models import embedder, flow, poolers

FEATURES = ("cached", "recompute")
EMBEDS = ("flow", "whitening", "raw")
FROZEN = ("encoder", "flow_const", "whitening")


def settings(cfg):
  c = cfg.flow
  poolers.check_pooler(c.pooler)
  if c.get("features", "cached") not in FEATURES:
    raise ClowlabError(f"clowlab: flow.features={c.features!r}; valid: {', '.join(FEATURES)}.")
  if c.get("embed", "flow") not in EMBEDS:
    raise ClowlabError(f"clowlab: flow.embed={c.embed!r}; valid: {', '.join(EMBEDS)}.")
  return c


def flow_config(ecfg: enc.EncoderConfig, cfg) -> flow.FlowConfig:
  c = settings(cfg)
  return flow.FlowConfig(dim=ecfg.hidden_size, levels=c.levels, depth=c.depth,
                         coupling=c.coupling, width=c.width, permutation=c.permutation,
                         logscale_factor=c.get("logscale_factor", 3.0))


def init_heads(rng, ecfg: enc.EncoderConfig, cfg):
  p, const = flow.init(rng, flow_config(ecfg, cfg))
  d = ecfg.hidden_size
  # Identity until data_init fits it on the training sentences.
  w = {"mean": jnp.zeros((d,), jnp.float32), "kernel": jnp.eye(d, dtype=jnp.float32)}
  return {"flow": p, "flow_const": const, "whitening": w}


def pooled(encoder_params, batch, ecfg: enc.EncoderConfig, pooler: str):
  """The frozen encoder's sentence vectors (evaluation mode: no dropout)."""
  out = enc.encode(encoder_params, batch["input_ids"], batch["attention_mask"],
                   batch["token_type_ids"], cfg=ecfg)
  return poolers.pool(out, batch["attention_mask"], pooler, encoder_params)


def post_process(params, x_BD, cfg, ecfg: enc.EncoderConfig, kind: str, k: int = 0):
  if kind == "raw":
    return x_BD
  if kind == "whitening":
    return whitening.apply(params["whitening"], x_BD, k)
  return flow.forward(params["flow"], params.get("flow_const"), x_BD, flow_config(ecfg, cfg))[0]


def embed(params, batch, ecfg: enc.EncoderConfig, cfg):
  c = settings(cfg)
  x = pooled(params["encoder"], batch, ecfg, c.pooler)
  return post_process(params, x, cfg, ecfg, c.get("embed", "flow"),
                      int(c.get("embed_whitening_dim", 0)))


def loss(params, state, batch, rng, ecfg: enc.EncoderConfig, cfg):
  c = settings(cfg)
  if "x_BD" in batch:
    x = batch["x_BD"]
  else:
    x = jax.lax.stop_gradient(pooled(params["encoder"], batch, ecfg, c.pooler))
  bpd_B = flow.bits_per_dim(params["flow"], params.get("flow_const"), x, flow_config(ecfg, cfg))
  value = bpd_B.mean()
  return value, {"bits_per_dim": value}, state


# ---------------------------------------------------------------------------------------------
# Data: sentences -> cached frozen-encoder features


def training_sentences(cfg, ctx: DataContext) -> list[str]:
  """data.train's lines (+ the eval.sts sentences with data.from_eval_sts), deduplicated in
  first-seen order."""
  texts: list[str] = []
  if list(cfg.data.get("train", []) or []):
    texts += list(mlm.text_dataset(cfg, ctx)["text"])
  if cfg.data.get("from_eval_sts", False):
    for ds in sources.scored_pair_sets(cfg.get("eval", {}).get("sts", []),
                                       ctx.cache_dir).values():
      texts += list(ds["text_a"]) + list(ds["text_b"])
  texts = list(dict.fromkeys(t for t in texts if t.strip()))
  if len(texts) < cfg.batch_size:
    raise ClowlabError(f"clowlab: BERT-flow has {len(texts)} training sentences, fewer than "
                       f"batch_size={cfg.batch_size}; add files to data.train or set "
                       "data.from_eval_sts=True.")
  return texts


def _fingerprint(encoder_params, ecfg, pooler: str, seq_len: int, texts: list[str]) -> str:
  h = hashlib.sha1()
  h.update(json.dumps([ecfg.to_dict(), pooler, seq_len], sort_keys=True, default=str).encode())
  for leaf in jax.tree_util.tree_leaves(encoder_params):
    h.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
  for t in texts:
    h.update(t.encode())
    h.update(b"\0")
  return h.hexdigest()[:16]


def encode_features(encoder_params, ecfg, tokenizer, texts, pooler: str, seq_len: int,
                    cache_dir: str | None = None) -> np.ndarray:
  """Pooled frozen-encoder vectors of `texts` [N, D] float32, cached under cache_dir."""
  path = None
  if cache_dir:
    key = _fingerprint(encoder_params, ecfg, pooler, seq_len, texts)
    path = os.path.join(cache_dir, "bert_flow_features", f"{key}.npy")
    if os.path.exists(path):
      x = np.load(path)
      if x.shape == (len(texts), ecfg.hidden_size):
        return x
      logging.warning("clowlab: feature cache %s has shape %s, expected %s; recomputing.",
                      path, x.shape, (len(texts), ecfg.hidden_size))
  params = jax.device_get(encoder_params)
  fn = embedder.pooled_fn(params, ecfg.replace(scan_layers=False), pooler)
  x = embedder.Embedder(tokenizer, fn, seq_len=seq_len)(texts)
  if path:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
      np.save(f, x)
    os.replace(tmp, path)  # atomic: a killed run never leaves half a cache
  return x


class FeatureLoader:
  """Batches of this host's cached feature rows, {"x_BD": float32 [batch_size, D]}, reshuffled
  every epoch from (seed, epoch); its state (the next step) resumes exactly. Each host holds its
  own slice of the sentences, so its batches are its share of the global batch."""

  def __init__(self, x_ND: np.ndarray, batch_size: int, seed: int):
    if len(x_ND) < batch_size:
      raise ClowlabError(f"clowlab: {len(x_ND)} feature rows on this host, fewer than its "
                         f"batch of {batch_size}; use more sentences or a smaller batch_size.")
    self.x, self.batch_size, self.seed = x_ND, batch_size, seed
    self.steps_per_epoch = len(x_ND) // batch_size
    self.step = 0

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    epoch, i = divmod(self.step, self.steps_per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.x))
    self.step += 1
    return {"x_BD": self.x[order[i * self.batch_size:(i + 1) * self.batch_size]]}

  def get_state(self) -> dict:
    return {"step": self.step, "rows": len(self.x), "batch_size": self.batch_size,
            "seed": self.seed}

  def set_state(self, state: dict) -> None:
    mine = self.get_state()
    for k in ("rows", "batch_size", "seed"):
      if state.get(k) != mine[k]:
        raise ClowlabError(f"clowlab: the checkpointed feature loader has {k}={state.get(k)!r}, "
                           f"this run {mine[k]!r}. Resume with the same data and batch_size.")
    self.step = int(state["step"])


class FlowData:
  """The iterator the trainer pulls from, plus all training features (for whitening)."""

  def __init__(self, features_ND: np.ndarray, loader):
    self.features, self.loader = features_ND, loader

  def __iter__(self):
    return self

  def __next__(self):
    return next(self.loader)

  def get_state(self):
    return self.loader.get_state()

  def set_state(self, state):
    self.loader.set_state(state)

  def peek(self):
    state = self.loader.get_state()
    batch = next(self.loader)
    self.loader.set_state(state)
    return batch


def make_data(cfg, ctx: DataContext):
  c = settings(cfg)
  if ctx.params is None or ctx.encoder_config is None:
    raise ClowlabError("clowlab: BERT-flow's data needs the encoder (DataContext.params).")
  texts = training_sentences(cfg, ctx)
  if ctx.process_index == 0:
    print(f"clowlab: bert_flow: {len(texts)} training sentences, "
          f"{len(texts) / cfg.batch_size:.1f} steps per epoch at batch_size={cfg.batch_size}",
          flush=True)
  # Each host embeds its own slice of the sentences.
  mine = texts[ctx.process_index::ctx.process_count]
  x = encode_features(ctx.params["encoder"], ctx.encoder_config, ctx.tokenizer, mine,
                      c.pooler, cfg.seq_len, ctx.cache_dir)
  if c.get("features", "cached") == "cached":
    if cfg.batch_size % ctx.process_count:
      raise ClowlabError(f"clowlab: batch_size={cfg.batch_size} is not divisible by the "
                         f"{ctx.process_count} processes.")
    loader = FeatureLoader(x, cfg.batch_size // ctx.process_count,
                           cfg.seed * 1_000_003 + ctx.process_index)
  else:
    import datasets  # noqa: PLC0415
    tok = pipeline.tokenize(datasets.Dataset.from_dict({"text": texts}), ctx.tokenizer,
                            seq_len=cfg.seq_len, cache_dir=ctx.cache_dir)
    loader = pipeline.make_loader(tok, global_batch_size=cfg.batch_size, seed=cfg.seed,
                                  process_index=ctx.process_index,
                                  process_count=ctx.process_count)
  return FlowData(x, loader)


def data_init(params, data: FlowData, ecfg: enc.EncoderConfig, cfg, mesh):
  """Fits whitening on all training features and runs the flow's ActNorm data-dependent
  initialisation on the first training batch."""
  from clowlab import sharding  # noqa: PLC0415
  c = settings(cfg)
  n, s1, s2 = whitening.moments(data.features)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415
    n, s1, s2 = (np.sum(multihost_utils.process_allgather(np.asarray(v)), 0)
                 for v in (n, s1, s2))
  w = whitening.from_moments(int(n), s1, s2)
  batch = sharding.global_batch(data.peek(), mesh)
  fcfg = flow_config(ecfg, cfg)

  @jax.jit
  def init_flow(p, b):
    x = b["x_BD"] if "x_BD" in b else pooled(p["encoder"], b, ecfg, c.pooler)
    return flow.data_init(p["flow"], p.get("flow_const"), x, fcfg)

  with jax.set_mesh(mesh):
    new_flow = init_flow(params, batch)
  return {**params, "flow": new_flow, "whitening": jax.tree_util.tree_map(jnp.asarray, w)}


# ---------------------------------------------------------------------------------------------
# Evaluation (raw vs whitening vs flow, STS and isotropy): evaluators/flow.py


def evals(cfg, cache_dir: str) -> dict:
  """Default evaluation: the "flow_sts" evaluator (raw, whitening and flow STS side by side,
  isotropy, held-out bits/dim) on config.eval.sts."""
  sets = list(cfg.get("eval", {}).get("sts", []) or [])
  return {"flow_sts": {"type": "flow_sts", "sets": sets}} if sets else {}


def export_pooler(params, cfg):
  c = settings(cfg)
  block = {k: c[k] for k in c.keys()}
  return ({"method": cfg.method, "flow": block},
          {k: params[k] for k in ("flow", "flow_const", "whitening") if k in params})


def batch_spec(cfg, ecfg: enc.EncoderConfig):
  """Cached features: the frozen encoder's pooled vectors [batch_size, D]; recompute: text."""
  if settings(cfg).get("features", "cached") == "cached":
    return {"x_BD": jax.ShapeDtypeStruct((cfg.batch_size, ecfg.hidden_size), jnp.float32)}
  return text_spec(cfg.batch_size, cfg.seq_len)


METHOD = Method(name="bert_flow", init_heads=init_heads, loss=loss, make_data=make_data,
                evals=evals, embed=embed, export_pooler=export_pooler, frozen=FROZEN,
                data_init=data_init, data_uses_params=True, batch_spec=batch_spec,
                passes_per_example=lambda cfg: int(cfg.flow.get("features") == "recompute"))
