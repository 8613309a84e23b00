"""COCO-LM (Meng et al., NeurIPS 2021) and its parent ELECTRA (Clark et al., ICLR 2020): an
auxiliary MLM generator corrupts the text, the main model learns from the corruption.

Per step, on a global batch of masked sequences (the MLM masker's 15 %, 80/10/10):
1. Generator (`coco.generator_layers` layers, the main model's hidden size, sharing all of its
   embeddings) is trained with MLM at the selected positions.
2. Corruption: at every selected position a token is sampled from the generator's softmax with
   gradients stopped; with `generator_sample_mode="eval"` (the authors' default) the sampling
   logits come from an extra generator pass with dropout off, with "train" from the training
   pass. `replaced` = sampled token != original (a correct sample counts as original).
3. Main model on the corrupted sequence:
   - ELECTRA (`clm=False, scl=False`): replaced-token detection, a binary head at every real token.
   - COCO-LM corrective LM (`clm=True`): the binary head is the copy head, p_copy = P(token is
     original); at the selected positions an LM head tied to the word embeddings (bias only, the
     authors' CLMHead) recovers the original token with
         p_CLM(x_orig) = 1[x_corrupt = x_orig] p_copy + (1 - p_copy) p_LM(x_orig)
     (loss -log p_CLM, with p_copy's gradient stopped in this term by default: the copy head
     learns from its own binary loss), plus the copy loss at every real token.
   - COCO-LM sequence contrastive learning (`scl=True`): the positive of each corrupted sequence
     is a contiguous crop (`crop_ratio`, 90 %) of its original, [CLS] + tokens + [SEP]; both go
     through the main model in one pass, CLS -> SCL head (dense, GELU, LayerNorm) -> InfoNCE over
     cosine / `temperature` with every other sequence of the global batch as a negative
     (gathered across devices by losses.contrastive), symmetric.
Loss = generator_weight * MLM + binary_weight * binary + clm_weight * CLM + scl_weight * SCL
(the authors' defaults: 1, 50, 1, 1; temperature 1).

Params: {"encoder": main model (exported as the HF checkpoint), "generator": {"layers",
"mlm_head"}, "binary_head", "clm_head" (with clm), "scl_head" (with scl)}.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from clowlab.errors import ClowlabError
from clowlab.losses import contrastive
from clowlab.methods import mlm
from clowlab.methods.base import Method
from clowlab.models import encoder as enc
from clowlab.models import heads

SAMPLE_MODES = ("eval", "train")


def settings(cfg):
  c = cfg.coco
  if c.generator_sample_mode not in SAMPLE_MODES:
    raise ClowlabError(f"clowlab: coco.generator_sample_mode={c.generator_sample_mode!r}; "
                       f"valid: {', '.join(SAMPLE_MODES)}.")
  if not 0.0 < c.crop_ratio <= 1.0:
    raise ClowlabError(f"clowlab: coco.crop_ratio={c.crop_ratio} must be in (0, 1].")
  if not c.temperature > 0:
    raise ClowlabError(f"clowlab: coco.temperature must be > 0, got {c.temperature}.")
  return c


def generator_config(ecfg: enc.EncoderConfig, cfg) -> enc.EncoderConfig:
  n = int(settings(cfg).generator_layers) or max(1, ecfg.num_layers // 3)
  if not 1 <= n:
    raise ClowlabError(f"clowlab: coco.generator_layers={n} must be >= 1.")
  return ecfg.replace(num_layers=n)


def init_heads(rng, ecfg: enc.EncoderConfig, cfg):
  c = settings(cfg)
  gcfg = generator_config(ecfg, cfg)
  k_gen, k_head, k_bin, k_scl = jax.random.split(rng, 4)
  gen = enc.init_params(k_gen, gcfg)
  std = ecfg.initializer_range
  out = {
      "generator": {"layers": gen["layers"], "mlm_head": heads.init_mlm_head(k_head, gcfg)},
      "binary_head": {"kernel": std * jax.random.truncated_normal(
          k_bin, -2.0, 2.0, (ecfg.hidden_size, 1), jnp.float32), "bias": jnp.zeros((1,))},
  }
  if c.clm:
    out["clm_head"] = {"bias": jnp.zeros((ecfg.vocab_size,), jnp.float32)}
  if c.scl:
    d = int(c.scl_dim) or ecfg.hidden_size
    out["scl_head"] = {
        "dense": {"kernel": std * jax.random.truncated_normal(
            k_scl, -2.0, 2.0, (ecfg.hidden_size, d), jnp.float32), "bias": jnp.zeros((d,))},
        "ln": {"scale": jnp.ones((d,)), "bias": jnp.zeros((d,))}}
  return out


# ---------------------------------------------------------------------------------------------
# Pieces (pure; the unit tests call them directly)


def selected_positions(w_BL, num_predictions: int):
  """(positions [B, P], weights [B, P]): the first `num_predictions` selected positions of each
  row (top_k is stable on ties), weight 0 for filler slots."""
  _, pos_BP = jax.lax.top_k(w_BL, num_predictions)
  return pos_BP, jnp.take_along_axis(w_BL, pos_BP, axis=1)


def corrupt(original_BL, pos_BP, w_BP, sampled_BP):
  """The original sequence with the sampled tokens written at the selected positions (filler
  slots keep the original) and the replaced mask (sampled token differs from the original)."""
  orig_BP = jnp.take_along_axis(original_BL, pos_BP, axis=1)
  vals_BP = jnp.where(w_BP > 0, sampled_BP, orig_BP)
  rows = jnp.arange(original_BL.shape[0])[:, None]
  corrupted_BL = original_BL.at[rows, pos_BP].set(vals_BP)
  return corrupted_BL, corrupted_BL != original_BL


def crop(original_BL, mask_BL, ratio: float, rng):
  """A contiguous crop of each row's content: [CLS] + ceil(ratio * n) of the n tokens between
  [CLS] and [SEP] from a random start + [SEP], left-aligned and padded (pad = the row's padding
  id, read from a padded slot, else 0). Returns (ids, mask)."""
  B, L = original_BL.shape
  length_B = mask_BL.sum(-1).astype(jnp.int32)
  content_B = jnp.maximum(length_B - 2, 0)
  keep_B = jnp.clip(jnp.ceil(ratio * content_B).astype(jnp.int32), jnp.minimum(content_B, 1),
                    content_B)
  start_B = 1 + jax.random.randint(rng, (B,), 0, jnp.maximum(content_B - keep_B + 1, 1))
  j_L = jnp.arange(L)[None, :]
  src_BL = jnp.where(j_L == 0, 0, jnp.where(j_L <= keep_B[:, None], start_B[:, None] + j_L - 1,
                                            length_B[:, None] - 1))
  ids_BL = jnp.take_along_axis(original_BL, jnp.clip(src_BL, 0, L - 1), axis=1)
  valid_BL = j_L <= keep_B[:, None] + 1
  pad_B = jnp.where(length_B < L, original_BL[jnp.arange(B), jnp.minimum(length_B, L - 1)], 0)
  return jnp.where(valid_BL, ids_BL, pad_B[:, None]), valid_BL.astype(mask_BL.dtype)


def clm_log_prob(lm_logits_BPV, targets_BP, copy_logit_BP, same_BP, stop_copy_grad: bool):
  """log p_CLM(original | h) = log(1[same] p_copy + (1 - p_copy) p_LM(original))."""
  if stop_copy_grad:
    copy_logit_BP = jax.lax.stop_gradient(copy_logit_BP)
  log_lm = -optax.softmax_cross_entropy_with_integer_labels(lm_logits_BPV, targets_BP)
  log_copy, log_not_copy = jax.nn.log_sigmoid(copy_logit_BP), jax.nn.log_sigmoid(-copy_logit_BP)
  return jnp.where(same_BP, jnp.logaddexp(log_copy, log_not_copy + log_lm), log_not_copy + log_lm)


def scl_embed(p, cls_BD, eps: float):
  x = cls_BD.astype(jnp.float32) @ p["dense"]["kernel"] + p["dense"]["bias"]
  return enc.layer_norm(jax.nn.gelu(x, approximate=False), p["ln"], eps)


# ---------------------------------------------------------------------------------------------
# The loss


def _generator_logits(params, ids, mask, types, pos_BP, rng, train, gcfg):
  gen = {"embeddings": params["encoder"]["embeddings"], "layers": params["generator"]["layers"]}
  out = enc.encode(gen, ids, mask, types, rng, train, cfg=gcfg)
  h_BPD = jnp.take_along_axis(out.last_BLD, pos_BP[..., None], axis=1)
  return heads.mlm_logits(params["generator"]["mlm_head"], gen["embeddings"]["word"], h_BPD, gcfg)


def loss(params, state, batch, rng, ecfg: enc.EncoderConfig, cfg):
  c = settings(cfg)
  gcfg = generator_config(ecfg, cfg)
  ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
  w_BL, labels_BL = batch["mlm_weights"], batch["mlm_labels"]
  original_BL = jnp.where(w_BL > 0, labels_BL, ids)
  pos_BP, w_BP = selected_positions(w_BL, mlm.max_predictions(cfg))
  targets_BP = jnp.take_along_axis(labels_BL, pos_BP, axis=1)
  n_sel = jnp.maximum(w_BP.sum(), 1.0)
  r_gen, r_eval, r_sample, r_crop, r_main = jax.random.split(rng, 5)

  # 1. Generator MLM.
  gen_logits = _generator_logits(params, ids, mask, types, pos_BP, r_gen, True, gcfg)
  gen_ce = optax.softmax_cross_entropy_with_integer_labels(gen_logits, targets_BP)
  gen_loss = jnp.sum(gen_ce * w_BP) / n_sel

  # 2. Corruption by sampling (no gradient into the generator from the main model's losses).
  if c.generator_sample_mode == "eval":
    sample_logits = _generator_logits(params, ids, mask, types, pos_BP, r_eval, False, gcfg)
  else:
    sample_logits = gen_logits
  sampled_BP = jax.random.categorical(r_sample, jax.lax.stop_gradient(sample_logits))
  corrupted_BL, replaced_BL = corrupt(original_BL, pos_BP, w_BP, sampled_BP)

  # 3. Main model: corrupted sequences (+ their crops for SCL) in one pass.
  B = ids.shape[0]
  main_ids, main_mask, main_types = corrupted_BL, mask, types
  if c.scl:
    crop_ids, crop_mask = crop(original_BL, mask, c.crop_ratio, r_crop)
    main_ids = jnp.concatenate([corrupted_BL, crop_ids])
    main_mask = jnp.concatenate([mask, crop_mask])
    main_types = jnp.concatenate([types, jnp.zeros_like(types)])
  out = enc.encode(params["encoder"], main_ids, main_mask, main_types, r_main, True, cfg=ecfg)
  h_BLD = out.last_BLD[:B]

  real_BL = mask.astype(jnp.float32)
  n_real = jnp.maximum(real_BL.sum(), 1.0)
  bh = params["binary_head"]
  copy_logit_BL = (h_BLD.astype(jnp.float32) @ bh["kernel"])[..., 0] + bh["bias"][0]
  copy_target_BL = (~replaced_BL).astype(jnp.float32)  # ELECTRA's "original" class
  bin_ce = optax.sigmoid_binary_cross_entropy(copy_logit_BL, copy_target_BL)
  bin_loss = jnp.sum(bin_ce * real_BL) / n_real
  bin_acc = jnp.sum(((copy_logit_BL > 0) == (copy_target_BL > 0)) * real_BL) / n_real
  replaced_sel = jnp.take_along_axis(replaced_BL, pos_BP, axis=1)
  total = c.generator_weight * gen_loss + c.binary_weight * bin_loss
  metrics = {"gen_mlm_loss": gen_loss,
             "gen_accuracy": jnp.sum((jnp.argmax(gen_logits, -1) == targets_BP) * w_BP) / n_sel,
             "replaced_rate": jnp.sum(replaced_sel * w_BP) / n_sel,
             "binary_loss": bin_loss, "binary_accuracy": bin_acc}

  if c.clm:
    h_BPD = jnp.take_along_axis(h_BLD, pos_BP[..., None], axis=1)
    lm_logits = jnp.einsum("bpd,vd->bpv", h_BPD, params["encoder"]["embeddings"]["word"]
                           .astype(h_BPD.dtype), preferred_element_type=jnp.float32)
    lm_logits = lm_logits + params["clm_head"]["bias"]
    same_BP = ~replaced_sel
    logp = clm_log_prob(lm_logits, targets_BP, jnp.take_along_axis(copy_logit_BL, pos_BP, 1),
                        same_BP, c.stop_copy_grad)
    clm_loss = -jnp.sum(logp * w_BP) / n_sel
    total = total + c.clm_weight * clm_loss
    metrics.update(clm_loss=clm_loss, clm_accuracy=jnp.sum(
        (jnp.argmax(lm_logits, -1) == targets_BP) * w_BP) / n_sel)

  if c.scl:
    s_2BD = scl_embed(params["scl_head"], out.cls_BD, ecfg.layer_norm_eps)
    scl_loss, m = contrastive.info_nce_by_name(
        s_2BD[:B], s_2BD[B:], impl=c.get("impl", "sharded"), temperature=c.temperature,
        symmetric=True)
    total = total + c.scl_weight * scl_loss
    metrics.update(scl_loss=scl_loss, **{f"scl_{k}": v for k, v in m.items() if k != "loss"})
  return total, metrics, state


def make_method(name: str) -> Method:
  return Method(name=name, init_heads=init_heads, loss=loss, make_data=mlm.make_data,
                batch_spec=mlm.batch_spec,
                passes_per_example=lambda cfg: 2 if cfg.coco.scl else 1)


METHOD = make_method("coco_lm")
ELECTRA = make_method("electra")
