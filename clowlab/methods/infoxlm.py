"""InfoXLM (Chi et al., NAACL 2021): cross-lingual pretraining with three tasks.

Per step, on a global batch of `batch_size` monolingual sentences and `parallel_batch_size`
translation pairs (docs/methods/infoxlm.md says why the tasks are summed, not alternated):
* MMLM: masked LM on the monolingual rows; languages sampled with q_l ∝ p_l^alpha
  (`data.alpha`, XLM's 0.7 by default) when the data is built.
* TLM: masked LM on [src ; tgt] in one sequence (the tokenizer's pair template), masks in both
  halves; positions restart at the target (XLM) with `tlm_reset_positions`, and the target half
  gets token type 1 when the model has two token types (our stand-in for XLM's language
  embeddings; XLM-R/InfoXLM have none).
* XLCo: each pair is a positive. Query = CLS of layer `xlco_layer` of the model on one side ->
  linear projection; key = the same from a momentum (EMA, `momentum`) copy of encoder +
  projection on the other side (a per-row coin picks which side is which with `xlco_swap`),
  run without dropout and without gradients. Negatives: every other key of the global batch
  (gathered across devices) and every filled row of a queue of past keys (`queue_size`),
  InfoNCE with `temperature` over cosine (or raw dot products with normalize=False). The keys
  of each step are enqueued after the loss (losses/queue.py: sharded over devices, FIFO).
Loss = mmlm_weight * MMLM + tlm_weight * TLM + xlco_weight * XLCo (1, 1, 1 as in the paper);
a weight of 0 removes the task from the step (and XLCo's heads and state from the model).

Params: {"encoder", "mlm_head" (tied to the word embeddings), "xlco_proj"}.
Method state: {"momentum": {"encoder", "xlco_proj"} (EMA copies), "queue": {queue_QD,
queue_Q, count}} — sharded like params / over the batch devices, checkpointed, restored.
Only the encoder is exported (`clowlab.convert export`): an XLM-R/BERT directory.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from clowlab.data import masking, multilingual, pipeline, sources
from clowlab.errors import ClowlabError
from clowlab.losses import contrastive
from clowlab.losses import queue as queue_lib
from clowlab.methods import mlm
from clowlab.methods.base import DataContext, Method, text_spec
from clowlab.models import encoder as enc
from clowlab.models import heads, poolers

VIEW_FIELDS = ("input_ids", "attention_mask", "token_type_ids")


def settings(cfg):
  c = cfg.infoxlm
  for k in ("mmlm_weight", "tlm_weight", "xlco_weight"):
    if c[k] < 0:
      raise ClowlabError(f"clowlab: infoxlm.{k}={c[k]} must be >= 0 (0 turns the task off).")
  if not (c.mmlm_weight or c.tlm_weight or c.xlco_weight):
    raise ClowlabError("clowlab: infoxlm.mmlm_weight, tlm_weight and xlco_weight are all 0: "
                       "nothing to train. Set at least one > 0.")
  if c.xlco_weight:
    if not 0.0 <= c.momentum < 1.0:
      raise ClowlabError(f"clowlab: infoxlm.momentum={c.momentum} must be in [0, 1) (the paper: "
                         "0.9999).")
    if not c.temperature > 0:
      raise ClowlabError(f"clowlab: infoxlm.temperature must be > 0, got {c.temperature}.")
    queue_lib.check_sizes(int(c.queue_size), int(c.parallel_batch_size))
    if c.xlco_pooling not in ("cls", "mean"):
      raise ClowlabError(f"clowlab: infoxlm.xlco_pooling={c.xlco_pooling!r}; valid: cls, mean.")
  if (c.tlm_weight or c.xlco_weight) and c.parallel_batch_size < 1:
    raise ClowlabError("clowlab: infoxlm.parallel_batch_size must be >= 1 for TLM / XLCo.")
  return c


def uses_parallel(c) -> bool:
  return bool(c.tlm_weight or c.xlco_weight)


def xlco_layer(ecfg: enc.EncoderConfig, c) -> int:
  """Index into hidden_states (1 = first Transformer layer, num_layers = last; -1 = last)."""
  n = ecfg.num_layers
  layer = int(c.xlco_layer)
  layer = layer + n + 1 if layer < 0 else layer
  if not 1 <= layer <= n:
    raise ClowlabError(f"clowlab: infoxlm.xlco_layer={c.xlco_layer} is outside 1..{n} (-1 = the "
                       f"last) for this {n}-layer encoder.")
  return layer


def proj_dim(ecfg: enc.EncoderConfig, c) -> int:
  return int(c.proj_dim) or ecfg.hidden_size


def init_heads(rng, ecfg: enc.EncoderConfig, cfg):
  c = settings(cfg)
  k_mlm, k_proj = jax.random.split(rng)
  out = {"mlm_head": heads.init_mlm_head(k_mlm, ecfg)}
  if c.xlco_weight:
    out["xlco_proj"] = heads.init_projection(k_proj, (ecfg.hidden_size, proj_dim(ecfg, c)),
                                             ecfg.initializer_range)
  return out


def init_state(params, ecfg: enc.EncoderConfig, cfg):
  c = settings(cfg)
  if not c.xlco_weight:
    return {}
  copy = lambda t: jax.tree_util.tree_map(jnp.copy, t)
  return {"momentum": {"encoder": copy(params["encoder"]), "xlco_proj": copy(params["xlco_proj"])},
          "queue": queue_lib.init(int(c.queue_size), proj_dim(ecfg, c))}


def sentence_vectors(encoder, proj, view, ecfg: enc.EncoderConfig, layer: int, rng, train,
                     pooling: str = "cls"):
  """Projected CLS (or mean) of hidden layer `layer`; layers above it are not run."""
  encoder, ecfg = enc.truncate(encoder, ecfg, layer)
  out = enc.encode(encoder, view["input_ids"], view["attention_mask"], view["token_type_ids"],
                   rng, train, cfg=ecfg)
  return heads.projection(proj, poolers.pool_layer(out, view["attention_mask"], pooling, -1))


def ema(old, new, momentum: float):
  """momentum * old + (1 - momentum) * new, with no gradient to `new`."""
  return jax.tree_util.tree_map(
      lambda o, n: momentum * o + (1.0 - momentum) * jax.lax.stop_gradient(n).astype(o.dtype),
      old, new)


def xlco_loss(params, state, para, rng, ecfg: enc.EncoderConfig, c):
  """(loss, metrics, new state): InfoNCE of query vs momentum key with the queue's negatives."""
  layer = xlco_layer(ecfg, c)
  r_swap, r_q = jax.random.split(rng)
  src, tgt = para["src"], para["tgt"]
  B = src["input_ids"].shape[0]
  swap_B = (jax.random.bernoulli(r_swap, 0.5, (B,)) if c.xlco_swap
            else jnp.zeros((B,), jnp.bool_))
  pick = lambda a, b: {f: jnp.where(swap_B[:, None], b[f], a[f]) for f in VIEW_FIELDS}
  q_view, k_view = pick(src, tgt), pick(tgt, src)
  # MoCo: the key encoder is updated from the current query weights before it makes the keys.
  key_params = ema(state["momentum"], {"encoder": params["encoder"],
                                       "xlco_proj": params["xlco_proj"]}, float(c.momentum))
  k_BP = jax.lax.stop_gradient(sentence_vectors(key_params["encoder"], key_params["xlco_proj"],
                                                k_view, ecfg, layer, None, False,
                                                c.xlco_pooling))
  q_BP = sentence_vectors(params["encoder"], params["xlco_proj"], q_view, ecfg, layer, r_q, True,
                          c.xlco_pooling)
  if c.normalize:  # the queue stores keys as they are scored
    k_BP = contrastive.l2_normalize(k_BP)
  loss, m = queue_lib.info_nce_with_queue(q_BP, k_BP, state["queue"],
                                          temperature=float(c.temperature),
                                          normalize=bool(c.normalize))
  new_state = {"momentum": key_params, "queue": queue_lib.enqueue(state["queue"], k_BP)}
  return loss, {f"xlco_{k}": v for k, v in m.items()}, new_state


def loss(params, state, batch, rng, ecfg: enc.EncoderConfig, cfg):
  c = settings(cfg)
  r_mmlm, r_tlm, r_xlco = jax.random.split(rng, 3)
  total, metrics = 0.0, {}
  n_pred = mlm.max_predictions(cfg)
  for name, weight, view, r in (("mmlm", c.mmlm_weight, batch.get("mono"), r_mmlm),
                                ("tlm", c.tlm_weight, (batch.get("para") or {}).get("src_tgt"),
                                 r_tlm)):
    if not weight:
      continue
    ce, n, correct, dropped = mlm.mlm_loss_on(params, view, r, ecfg, n_pred)
    n = jnp.maximum(n, 1.0)
    total = total + weight * ce / n
    metrics.update({f"{name}_loss": ce / n, f"{name}_accuracy": correct / n,
                    f"{name}_dropped_predictions": dropped})
  new_state = state
  if c.xlco_weight:
    value, m, new_state = xlco_loss(params, state, batch["para"], r_xlco, ecfg, c)
    total = total + c.xlco_weight * value
    metrics.update(xlco_loss=value, **m)
  return total, metrics, new_state


def passes_per_example(cfg) -> float:
  """Forward passes per monolingual row: MMLM 1, and per pair TLM 1 + XLCo 2 (query, key)."""
  c = cfg.infoxlm
  per_pair = (1 if c.tlm_weight else 0) + (2 if c.xlco_weight else 0)
  return (1 if c.mmlm_weight else 0) + per_pair * c.parallel_batch_size / cfg.batch_size


# ----------------------------------------------------------------------------------------------
# Data


class ZipLoader:
  """Several loaders stepped together: next() -> {name: batch}; one checkpointable state."""

  def __init__(self, loaders: dict):
    self.loaders = loaders

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    return {name: next(loader) for name, loader in self.loaders.items()}

  def get_state(self) -> dict:
    return {name: loader.get_state() for name, loader in self.loaders.items()}

  def set_state(self, state: dict) -> None:
    missing = sorted(set(self.loaders) - set(state))
    if missing:
      raise ClowlabError(f"clowlab: the checkpoint's data state lacks {missing}; it was written "
                         "by a run with other InfoXLM tasks. Resume with the same config.")
    for name, loader in self.loaders.items():
      loader.set_state(state[name])


class TlmTransform:
  """Masks the joint [src ; tgt] view (both halves) and sets its positions and token types."""

  def __init__(self, masker: masking.MlmMasker, sep_id: int, reset_positions: bool,
               target_type: int):
    self.masker, self.sep_id = masker, int(sep_id)
    self.reset_positions, self.target_type = bool(reset_positions), int(target_type)

  def __call__(self, batch: dict, keys_B: np.ndarray) -> dict:
    batch = self.masker(batch, keys_B)
    view = dict(batch["src_tgt"])
    positions, types = tlm_positions(view["input_ids"], view["attention_mask"], self.sep_id,
                                     self.reset_positions, self.target_type)
    view["position_ids"] = positions
    if self.target_type:
      view["token_type_ids"] = types
    batch["src_tgt"] = view
    return batch


def tlm_positions(ids_BL: np.ndarray, mask_BL: np.ndarray, sep_id: int, reset: bool,
                  target_type: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """0-based positions (restarting at the target with `reset`) and token types (target_type on
  the target half). The target starts right after the source's first separator, so with the
  XLM-R template `<s> a </s></s> b </s>` the second `</s>` plays the target's `<s>`."""
  B, L = ids_BL.shape
  is_sep = ids_BL == sep_id
  first_sep_B = np.where(is_sep.any(1), is_sep.argmax(1), L - 1)
  start_B1 = (first_sep_B + 1)[:, None]
  j_BL = np.broadcast_to(np.arange(L), (B, L))
  in_tgt = j_BL >= start_B1
  positions = np.where(in_tgt & reset, j_BL - start_B1, j_BL)
  positions = np.where(mask_BL > 0, positions, 0).astype(np.int32)
  types = (in_tgt & (mask_BL > 0)).astype(np.int32) * target_type
  return positions, types


def corpus(cfg, cache_dir: str) -> multilingual.Corpus:
  d = cfg.data
  return multilingual.prepare(mono=list(d.get("mono", []) or []),
                              parallel=list(d.get("parallel", []) or []),
                              exclude=list(d.get("exclude", []) or []),
                              mono_from_parallel=bool(d.get("mono_from_parallel", True)),
                              cache_dir=cache_dir)


def tokenizer_text(cfg, cache_dir: str) -> list[str]:
  """Files a from-scratch sentencepiece vocabulary is trained on: the prepared monolingual text
  (evaluation sentences already removed)."""
  return [f for _, f in sorted(corpus(cfg, cache_dir).mono_files.items())]


def mono_dataset(cfg, ctx: DataContext, corp: multilingual.Corpus):
  """Tokenized monolingual rows, resampled once with the language exponent (seeded)."""
  import datasets  # noqa: PLC0415
  parts, counts = [], {}
  for lang, path in sorted(corp.mono_files.items()):
    ds = pipeline.tokenize(sources.load_text(path, cache_dir=ctx.cache_dir), ctx.tokenizer,
                           seq_len=cfg.seq_len, cache_dir=ctx.cache_dir)
    parts.append((lang, ds))
    counts[lang] = len(ds)
  picks = multilingual.balanced_indices(counts, float(cfg.data.get("alpha", 0.7)), cfg.seed)
  offsets, index, total = {}, [], 0
  for lang, ds in parts:
    offsets[lang] = total
    total += len(ds)
    index.append(picks.get(lang, np.zeros(0, np.int64)) + offsets[lang])
  joined = datasets.concatenate_datasets([ds for _, ds in parts])
  joined.info.description = parts[0][1].info.description  # keep tokenize's metadata
  return joined.select(np.concatenate(index))


def make_data(cfg, ctx: DataContext):
  c = settings(cfg)
  corp = corpus(cfg, ctx.cache_dir)
  loaders = {}
  mask_cfg = masking.MaskingConfig(mask_prob=cfg.mlm.mask_prob, whole_word=cfg.mlm.whole_word)
  common = dict(seed=cfg.seed, process_index=ctx.process_index, process_count=ctx.process_count)
  if c.mmlm_weight:
    loaders["mono"] = pipeline.make_loader(
        mono_dataset(cfg, ctx, corp), global_batch_size=cfg.batch_size,
        transform=masking.MlmMasker.from_tokenizer(ctx.tokenizer, mask_cfg), **common)
  if uses_parallel(c):
    if corp.parallel_file is None:
      raise ClowlabError("clowlab: TLM / XLCo need translation pairs but data.parallel is empty. "
                         "Add SRC-TGT:PATH entries, or set infoxlm.tlm_weight and xlco_weight "
                         "to 0.")
    pairs = sources.load_parallel(corp.parallel_file, columns=(0, 1), format="tsv", header=False,
                                  cache_dir=ctx.cache_dir)
    views = (("src", "tgt") if c.xlco_weight else ()) + (("src_tgt",) if c.tlm_weight else ())
    tok = pipeline.tokenize(pairs, ctx.tokenizer, seq_len=cfg.seq_len, views=views,
                            cache_dir=ctx.cache_dir)
    types = ctx.encoder_config.type_vocab_size if ctx.encoder_config else 1
    transform = TlmTransform(
        masking.MlmMasker.from_tokenizer(ctx.tokenizer, mask_cfg, views=("src_tgt",)),
        ctx.tokenizer.sep_id, c.tlm_reset_positions, 1 if types >= 2 else 0) \
        if c.tlm_weight else None
    # A different seed stream from the monolingual loader's.
    loaders["para"] = pipeline.make_loader(tok, global_batch_size=int(c.parallel_batch_size),
                                           transform=transform,
                                           **{**common, "seed": cfg.seed + 1})
  return ZipLoader(loaders)


# ----------------------------------------------------------------------------------------------
# Embedding and evaluation


def embed(params, batch, ecfg: enc.EncoderConfig, cfg):
  """Pooled hidden layer `eval_layer` (mean or cls), as the cross-lingual evaluators use."""
  c = cfg.infoxlm
  layer = int(c.eval_layer) if c.eval_layer else xlco_layer(ecfg, c)
  layer = poolers.check_layer(c.eval_pooling, layer, ecfg.num_layers + 1) % (ecfg.num_layers + 1)
  encoder, ecfg = enc.truncate(params["encoder"], ecfg, layer)
  out = enc.encode(encoder, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                   cfg=ecfg)
  return poolers.pool_layer(out, batch["attention_mask"], c.eval_pooling, layer)


def evals(cfg, cache_dir: str) -> dict:
  """Default evaluation from config.eval: Tatoeba-style retrieval (tatoeba_dir,
  tatoeba_languages), cross-lingual STS (xsts_dir, xsts_pairs, xsts_split), explicit bitext
  pairs (bitext) and scored cross-lingual pairs (xsts); each embedded as `embed` does, in
  batches of eval.batch_size. A directory that does not exist is skipped."""
  e = cfg.get("eval", None)
  if not e:
    return {}
  bs = int(e.get("batch_size", 64))
  out = {}
  if e.get("tatoeba_dir", "") and os.path.isdir(e.tatoeba_dir):
    out["tatoeba"] = {"type": "tatoeba", "dir": e.tatoeba_dir, "batch_size": bs,
                      "languages": list(e.get("tatoeba_languages", []) or [])}
  if e.get("xsts_dir", "") and os.path.isdir(e.xsts_dir):
    out["xsts"] = {"type": "xsts", "dir": e.xsts_dir, "pairs": list(e.xsts_pairs),
                   "split": e.get("xsts_split", "test"), "batch_size": bs}
  if list(e.get("bitext", []) or []):
    out["bitext"] = {"type": "bitext", "pairs": list(e.bitext), "batch_size": bs}
  if list(e.get("xsts", []) or []):
    out["xsts_files"] = {"type": "xsts_files", "pairs": list(e.xsts), "batch_size": bs}
  return out


def batch_spec(cfg, ecfg: enc.EncoderConfig):
  """{"mono": MMLM rows [batch_size, L], "para": pairs [parallel_batch_size, L] as src and tgt
  (XLCo) and src_tgt (TLM: one sequence with its own position ids)}, as make_data yields."""
  c, length = settings(cfg), cfg.seq_len
  out = {}
  if c.mmlm_weight:
    out["mono"] = text_spec(cfg.batch_size, length, mlm=True)
  if uses_parallel(c):
    p = int(c.parallel_batch_size)
    para = {"index": text_spec(p, 1)["index"]}
    if c.xlco_weight:
      para.update(src=text_spec(p, length, index=False), tgt=text_spec(p, length, index=False))
    if c.tlm_weight:
      tlm = text_spec(p, length, mlm=True, index=False)
      para["src_tgt"] = {**tlm, "position_ids": tlm["input_ids"]}
    out["para"] = para
  return out


METHOD = Method(name="infoxlm", init_heads=init_heads, loss=loss, make_data=make_data,
                init_state=init_state, evals=evals, passes_per_example=passes_per_example,
                embed=embed, tokenizer_text=tokenizer_text, batch_spec=batch_spec)
