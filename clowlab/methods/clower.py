"""CLOWER: word-character contrastive pretraining for character-level Chinese encoders.

The model stays a plain character BERT (its input pipeline, vocabulary and export are those of
any char-level Chinese BERT); jieba words only shape the training signal. Per step, for a batch
of sentences segmented once in the input pipeline:

  char view  the sentence with BERT MLM corruption of single characters (15 %, 80/10/10):
             the char-MLM loss.
  word view  the same sentence with a few selected jieba words (`word_prob` of the words with at
             least `min_chars` characters, at most `max_words` per row) replaced as wholes by
             [MASK]. c_w = mean of its hidden states over w's character positions: what the
             character positions hold about w from the context alone.
  word unit  each selected word encoded on its own, `[CLS] w [SEP]` (at most `max_word_tokens`
             tokens): z_w = mean over w's characters, the word as one coarse-grained unit,
             composed by the same encoder.
  word-char contrast (WCL)  after a shared projection head, InfoNCE pulls c_w to z_w and pushes
             it from the units of every other selected word of the global batch (same sentence
             and other rows, gathered across devices), both directions. Other occurrences of the
             same word (same character ids) are not used as negatives.
  optional word-level sentence contrast (`sentence_weight`): mean-pooled char view vs word view
             of the same sentence, InfoNCE over the global batch.

    loss = mlm_weight * MLM + word_weight * WCL + sentence_weight * SCL

At inference only the encoder is kept (the projection head is dropped); sentence embeddings are
mean-pooled. With word_weight = sentence_weight = 0 the step is exactly char-MLM (the baseline
of the comparison) and runs one encoder pass. docs/methods/clower.md has the design, the first
design we tried and why it failed, and the alternatives considered.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from clowlab.data import masking, multilingual, pipeline, sources, tokenizers
from clowlab.errors import ClowlabError
from clowlab.losses import contrastive
from clowlab.methods import mlm
from clowlab.methods.base import DataContext, Method, text_spec
from clowlab.models import encoder as enc
from clowlab.models import heads, poolers

DEFAULTS = {
    "word_prob": 0.3,        # of the eligible words of a row, selected for the word view
    "min_chars": 2,          # eligible words have at least this many tokens
    "max_words": 4,          # word slots per row (static shape)
    "max_word_tokens": 8,    # [CLS] word [SEP] length of the word-unit pass (longer: cut)
    "temperature": 0.05,
    "mlm_weight": 1.0, "word_weight": 1.0, "sentence_weight": 0.0,
    "word_stop_gradient": False,  # True: the word units are targets only (no gradient)
    "layer": -1,             # hidden layer the contrast reads (-1 = last)
    "jieba_dict": "",        # jieba user dictionary ("" = jieba's default dictionary only)
    "jieba_cache_dir": "",   # jieba's prefix-dict cache ("" = <cache_dir>/jieba)
}
_SALT = np.uint64(0x636C6F776572)  # "clower": word selection independent of the char masks
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # spreads (token id, rank in word) before hashing


def settings(cfg) -> ml_collections.ConfigDict:
  c = dict(DEFAULTS)
  given = dict(cfg.get("clower", {}) or {})
  unknown = sorted(set(given) - set(DEFAULTS))
  if unknown:
    raise ClowlabError(f"clowlab: unknown key clower.{unknown[0]}; valid: "
                       f"{', '.join(sorted(DEFAULTS))}.")
  c.update(given)
  if not 0.0 < c["word_prob"] <= 1.0 or c["max_words"] < 1 or c["min_chars"] < 1 or (
      c["max_word_tokens"] < 3):
    raise ClowlabError("clowlab: clower.word_prob must be in (0, 1], clower.max_words >= 1, "
                       "clower.min_chars >= 1 and clower.max_word_tokens >= 3 (got "
                       f"{c['word_prob']}, {c['max_words']}, {c['min_chars']}, "
                       f"{c['max_word_tokens']}).")
  if c["temperature"] <= 0:
    raise ClowlabError(f"clowlab: clower.temperature={c['temperature']} must be > 0, e.g. 0.05.")
  return ml_collections.ConfigDict(c)


def uses_word_view(cfg) -> bool:
  c = settings(cfg)
  return c.word_weight > 0 or c.sentence_weight > 0


# ----------------------------------------------------------------------------------------------
# Input pipeline (numpy, per host): jieba word ids come from the cached tokenization.


def select_words(word_ids_BL: np.ndarray, keys_B: np.ndarray, *, word_prob: float,
                 min_chars: int, max_words: int) -> np.ndarray:
  """Word ids [B, max_words] chosen per row (-1 = empty slot), ascending.

  Of a row's n eligible words (>= min_chars tokens) round(word_prob * n) are chosen (stochastic
  rounding, at least one when n > 0, at most max_words); which ones and the rounding are pure
  functions of the row key, like the MLM masks.
  """
  B, L = word_ids_BL.shape
  u_BL1 = masking.key_uniforms(np.asarray(keys_B, np.uint64) ^ _SALT, L + 1, 1)
  score_BL, u_round_B = u_BL1[:, :L, 0], u_BL1[:, L, 0]
  rows, cols = np.nonzero(word_ids_BL >= 0)
  count_BL = np.zeros((B, L), np.int64)  # tokens per word id (word ids are < L)
  np.add.at(count_BL, (rows, word_ids_BL[rows, cols]), 1)
  eligible_BL = count_BL >= min_chars
  n_B = eligible_BL.sum(1)
  k_B = np.floor(word_prob * n_B + u_round_B).astype(np.int64)
  k_B = np.clip(np.maximum(k_B, n_B > 0), 0, np.minimum(n_B, max_words))
  order_BL = np.argsort(np.where(eligible_BL, score_BL, 2.0), axis=1, kind="stable")
  out_BW = np.full((B, max_words), -1, np.int32)
  for b in range(B):
    out_BW[b, :k_B[b]] = np.sort(order_BL[b, :k_B[b]])
  return out_BW


def word_keys(input_ids_BL: np.ndarray, in_BWL: np.ndarray, slots_BW: np.ndarray) -> np.ndarray:
  """An int32 hash of each slot's token ids (equal words, equal keys; -1 for empty slots).

  in_BWL: whether token l belongs to slot w (`slot_membership`).
  """
  rank_BWL = np.cumsum(in_BWL, axis=2)  # 1-based position of the token inside its word
  tok = input_ids_BL.astype(np.uint64)[:, None, :] + rank_BWL.astype(np.uint64) * _GOLDEN
  with np.errstate(over="ignore"):
    h_BW = np.where(in_BWL, masking.mix64(tok), np.uint64(0)).sum(2, dtype=np.uint64)
  keys = (masking.mix64(h_BW) >> np.uint64(33)).astype(np.int32)
  return np.where(slots_BW >= 0, keys, -1).astype(np.int32)


def slot_membership(word_ids_BL, slots_BW):
  """[B, W, L]: token l belongs to the (non-empty) slot w; numpy or jax arrays."""
  return (word_ids_BL[:, None, :] == slots_BW[:, :, None]) & (slots_BW[:, :, None] >= 0)


def word_units(input_ids_BL: np.ndarray, in_BWL: np.ndarray, *, length: int, cls_id: int,
               sep_id: int, pad_id: int) -> dict[str, np.ndarray]:
  """Each slot's word on its own: ids [B, W, length] `[CLS] w [SEP]` (pad after; an empty slot is
  `[CLS] [SEP]`), attention mask, and weights 1 at the word's own tokens (its first length - 2)."""
  B, W, _ = in_BWL.shape
  ids_BWT = np.full((B, W, length), pad_id, np.int32)
  weights_BWT = np.zeros((B, W, length), np.float32)
  for b, w in zip(*np.nonzero(in_BWL.any(2))):
    toks = input_ids_BL[b, in_BWL[b, w]][:length - 2]
    ids_BWT[b, w, 1:1 + len(toks)] = toks
    weights_BWT[b, w, 1:1 + len(toks)] = 1.0
  n_BW = weights_BWT.sum(-1).astype(np.int64)
  ids_BWT[:, :, 0] = cls_id
  np.put_along_axis(ids_BWT, (n_BW + 1)[..., None], sep_id, axis=2)
  mask_BWT = (np.arange(length) < (n_BW + 2)[..., None]).astype(np.int32)
  return {"word_unit_ids": ids_BWT, "word_unit_mask": mask_BWT, "word_unit_weights": weights_BWT}


class ClowerTransform:
  """Loader transform: char-view MLM masks + word slots + the whole-word-masked word view + the
  word units."""

  def __init__(self, tokenizer, cfg):
    c = settings(cfg)
    self.masker = masking.MlmMasker.from_tokenizer(tokenizer, masking.MaskingConfig(
        mask_prob=cfg.mlm.mask_prob, whole_word=False))
    self.word_view = uses_word_view(cfg)
    self.tok = tokenizer
    self.c = c

  def __call__(self, batch: dict, keys_B: np.ndarray) -> dict:
    out = self.masker(batch, keys_B)
    if not self.word_view:
      return out
    c, tok = self.c, self.tok
    ids_BL, wid_BL = batch["input_ids"], batch["word_ids"]
    slots_BW = select_words(wid_BL, keys_B, word_prob=c.word_prob, min_chars=c.min_chars,
                            max_words=c.max_words)
    in_BWL = slot_membership(wid_BL, slots_BW)
    out["word_input_ids"] = np.where(in_BWL.any(1), tok.mask_id, ids_BL).astype(np.int32)
    out["word_slots"] = slots_BW
    out["word_keys"] = word_keys(ids_BL, in_BWL, slots_BW)
    out.update(word_units(ids_BL, in_BWL, length=c.max_word_tokens, cls_id=tok.cls_id,
                          sep_id=tok.sep_id, pad_id=tok.pad_id))
    return out


def corpus_file(cfg, cache_dir: str, key: str = "train") -> str:
  """The sentences of config.data.<key> (specs PATH, PATH#COLUMN, PATH#@chars), one per line,
  prepared once under cache_dir; training text without config.data.exclude's sentences."""
  specs = list(cfg.data.get(key, []) or [])
  if not specs:
    raise ClowlabError(f"clowlab: config.data.{key} is empty; give Chinese text files (PATH, "
                       "PATH#COLUMN for CSV/TSV/JSONL, PATH#@chars for one-char-per-line).")
  corpus = multilingual.prepare(mono=[f"zh:{s}" for s in specs],
                                exclude=list(cfg.data.get("exclude", []) or [])
                                if key == "train" else [],
                                mono_from_parallel=False, cache_dir=cache_dir)
  return corpus.mono_files["zh"]


def segmenting_tokenizer(cfg, ctx: DataContext):
  """The run's tokenizer with jieba word ids (user dict / cache dir from config.clower)."""
  c = settings(cfg)
  return tokenizers.load_tokenizer(
      ctx.tokenizer.name, word_segmenter="jieba", jieba_dict=c.jieba_dict or None,
      jieba_cache_dir=c.jieba_cache_dir or os.path.join(ctx.cache_dir, "jieba"))


def make_data(cfg, ctx: DataContext):
  tok = segmenting_tokenizer(cfg, ctx)
  ds = sources.load_text(corpus_file(cfg, ctx.cache_dir), cache_dir=ctx.cache_dir)
  tok_ds = pipeline.tokenize(ds, tok, seq_len=cfg.seq_len, cache_dir=ctx.cache_dir)
  return pipeline.make_loader(tok_ds, global_batch_size=cfg.batch_size, seed=cfg.seed,
                              process_index=ctx.process_index, process_count=ctx.process_count,
                              transform=ClowerTransform(tok, cfg))


def tokenizer_text(cfg, cache_dir: str) -> list[str]:
  return [corpus_file(cfg, cache_dir)]


# ----------------------------------------------------------------------------------------------
# Model and loss (global arrays).


def init_heads(rng, ecfg: enc.EncoderConfig, cfg):
  k1, k2 = jax.random.split(rng)
  out = {"mlm_head": heads.init_mlm_head(k1, ecfg)}
  if uses_word_view(cfg):
    out["clower_proj"] = heads.init_projection(k2, (ecfg.hidden_size, ecfg.hidden_size))
  return out


def span_means(h_BLD: jax.Array, word_ids_BL: jax.Array, slots_BW: jax.Array) -> jax.Array:
  """Mean of h over each slot's tokens: [B, W, D] (zeros for empty slots)."""
  in_BWL = slot_membership(word_ids_BL, slots_BW).astype(jnp.float32)
  n_BW = jnp.maximum(in_BWL.sum(-1), 1.0)
  return jnp.einsum("bwl,bld->bwd", in_BWL, h_BLD.astype(jnp.float32)) / n_BW[..., None]


def word_char_nce(c_ND: jax.Array, z_ND: jax.Array, keys_N: jax.Array, valid_N: jax.Array,
                  temperature: float) -> tuple[jax.Array, jax.Array]:
  """Symmetric InfoNCE between char-span (c) and word (z) vectors of N word slots.

  Row i's positive is column i; negatives are the other valid slots except those with the same
  word key (the same word elsewhere in the batch is not a negative). Returns (mean loss over
  valid slots, fraction of valid slots whose best column, both directions, is the positive).
  Written on global arrays: under jit the rows stay sharded and the columns are gathered.
  """
  c_ND, z_ND = contrastive.l2_normalize(c_ND), contrastive.l2_normalize(z_ND)
  logits_NN = (c_ND @ z_ND.T) / temperature
  same_NN = keys_N[:, None] == keys_N[None, :]
  eye_NN = jnp.eye(keys_N.shape[0], dtype=bool)
  allowed_NN = valid_N[:, None] & valid_N[None, :] & (eye_NN | ~same_NN)
  logits_NN = jnp.where(allowed_NN, logits_NN, -1e9)
  pos_N = jnp.diagonal(logits_NN)
  rows_N = jax.nn.logsumexp(logits_NN, axis=1) - pos_N
  cols_N = jax.nn.logsumexp(logits_NN, axis=0) - pos_N
  w_N = valid_N.astype(jnp.float32)
  n = jnp.maximum(w_N.sum(), 1.0)
  value = 0.5 * jnp.sum((rows_N + cols_N) * w_N) / n
  hit_N = (jnp.argmax(logits_NN, 1) == jnp.arange(keys_N.shape[0])) & (
      jnp.argmax(logits_NN, 0) == jnp.arange(keys_N.shape[0]))
  return value, jnp.sum(hit_N * w_N) / n


def _hidden(out: enc.EncoderOutput, layer: int) -> jax.Array:
  return out.last_BLD if layer == -1 else out.hidden_states_NBLD[layer]


def loss(params, state, batch, rng, ecfg: enc.EncoderConfig, cfg):
  c = settings(cfg)
  # The char pass uses the step key itself, so with the word terms off this is the MLM step.
  r_char, r_word = rng, jax.random.fold_in(rng, 1)
  mask_BL = batch["attention_mask"]
  char = enc.encode(params["encoder"], batch["input_ids"], mask_BL, batch["token_type_ids"],
                    r_char, True, cfg=ecfg)
  ce, n, correct, dropped = mlm.mlm_terms(params, char.last_BLD, batch, ecfg,
                                          mlm.max_predictions(cfg))
  n = jnp.maximum(n, 1.0)
  mlm_value = ce / n
  metrics = {"mlm_loss": mlm_value, "mlm_accuracy": correct / n,
             "mlm_dropped_predictions": dropped}
  total = c.mlm_weight * mlm_value
  if not uses_word_view(cfg):
    return total, metrics, state
  word = enc.encode(params["encoder"], batch["word_input_ids"], mask_BL,
                    batch["token_type_ids"], r_word, True, cfg=ecfg)
  slots_BW, wid_BL = batch["word_slots"], batch["word_ids"]
  B, W, T = batch["word_unit_ids"].shape
  unit = enc.encode(params["encoder"], batch["word_unit_ids"].reshape(B * W, T),
                    batch["word_unit_mask"].reshape(B * W, T),
                    jnp.zeros((B * W, T), jnp.int32), jax.random.fold_in(rng, 2), True, cfg=ecfg)
  h_unit_NTD = _hidden(unit, c.layer).astype(jnp.float32)
  if c.word_stop_gradient:
    h_unit_NTD = jax.lax.stop_gradient(h_unit_NTD)
  w_NT = batch["word_unit_weights"].reshape(B * W, T)
  unit_ND = jnp.einsum("nt,ntd->nd", w_NT, h_unit_NTD) / jnp.maximum(w_NT.sum(1), 1.0)[:, None]
  proj = lambda x: heads.projection(params["clower_proj"], x, "tanh", final_activation=True)
  c_ND = proj(span_means(_hidden(word, c.layer), wid_BL, slots_BW)).reshape(B * W, -1)
  z_ND = proj(unit_ND)
  valid_N = (slots_BW >= 0).reshape(-1)
  wcl, acc = word_char_nce(c_ND, z_ND, batch["word_keys"].reshape(-1), valid_N, c.temperature)
  metrics.update({"wcl_loss": wcl, "wcl_accuracy": acc,
                  "words_per_row": jnp.sum(valid_N.astype(jnp.float32)) / B})
  total = total + c.word_weight * wcl
  if c.sentence_weight > 0:
    sc = poolers.pool(char, mask_BL, "mean")
    sw = poolers.pool(word, mask_BL, "mean")
    scl, _ = contrastive.info_nce(sc, sw, temperature=c.temperature, symmetric=True)
    metrics["scl_loss"] = scl
    total = total + c.sentence_weight * scl
  metrics["loss_total"] = total
  return total, metrics, state


def passes(cfg) -> float:
  """Encoder passes per example, in sequence-length units: char view + word view + the word
  units (max_words x max_word_tokens tokens)."""
  if not uses_word_view(cfg):
    return 1
  c = settings(cfg)
  return 2 + c.max_words * c.max_word_tokens / cfg.seq_len


# ----------------------------------------------------------------------------------------------
# Inference: a plain character BERT, mean-pooled.


def embed(params, batch, ecfg: enc.EncoderConfig, cfg):
  out = enc.encode(params["encoder"], batch["input_ids"], batch["attention_mask"],
                   batch["token_type_ids"], None, False, cfg=ecfg)
  return poolers.pool(out, batch["attention_mask"], "mean")


def evals(cfg, cache_dir: str) -> dict:
  """Default evaluation: held-out char-MLM on config.data.eval (its text specs prepared as the
  training text is) and Chinese STS / matching sets (config.eval.sts: {name, path, columns};
  Spearman x 100 of cosine vs score or 0/1 label)."""
  out = {}
  if list(cfg.data.get("eval", []) or []):
    out["mlm"] = {"type": "mlm", "files": [corpus_file(cfg, cache_dir, "eval")],
                  "split_sentences": False}
  sets = list(cfg.get("eval", {}).get("sts", []) or [])
  if sets:
    out["sts"] = {"type": "sts", "sets": sets}
  return out


def batch_spec(cfg, ecfg: enc.EncoderConfig):
  """Char-MLM rows, plus (with the word view) the whole-word-masked copy, max_words word slots
  per row and each slot's word alone in max_word_tokens tokens, as ClowerTransform yields."""
  b, length = cfg.batch_size, cfg.seq_len
  out = text_spec(b, length, mlm=True)
  if uses_word_view(cfg):
    c = settings(cfg)
    w, t = int(c.max_words), int(c.max_word_tokens)
    i32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.int32)  # noqa: E731
    out.update(word_input_ids=i32(b, length), word_slots=i32(b, w), word_keys=i32(b, w),
               word_unit_ids=i32(b, w, t), word_unit_mask=i32(b, w, t),
               word_unit_weights=jax.ShapeDtypeStruct((b, w, t), jnp.float32))
  return out


METHOD = Method(name="clower", init_heads=init_heads, loss=loss, make_data=make_data,
                evals=evals, mlm_eval=mlm.heldout_terms, passes_per_example=passes, embed=embed,
                tokenizer_text=tokenizer_text, batch_spec=batch_spec)
