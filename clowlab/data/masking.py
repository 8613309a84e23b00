"""BERT-style masked-language-model corruption in numpy, vectorised over a padded batch.

Of the maskable tokens (not pad, not special) a fraction `mask_prob` is selected; of those
`mask_token_frac` become the mask token, `random_token_frac` a random non-special token and the
rest stay unchanged. With `whole_word`, words (runs of tokens with the same `word_ids`) are
selected instead and all their tokens are predicted.

The number selected per row is `mask_prob * n` with stochastic rounding (so the expected rate is
exactly `mask_prob`), at least 1 for a row with any maskable token.

Randomness: every decision at token position t reads its own uniforms `u[b, t, :]`. They come
either from an explicit `np.random.Generator` (`rng=`: deterministic given the generator state
and the batch shape) or from per-row integer keys (`keys_B=`, see `key_uniforms`: u[b, t, :] is a
pure function of (keys_B[b], t)). The loader keys each row by (seed, epoch, record), so its masks
do not depend on batch composition, host count, bucket length or restarts.

    masker = MlmMasker.from_tokenizer(tok, MaskingConfig(mask_prob=0.15))
    out = masker.mask(input_ids_BL, rng=np.random.default_rng(0))
    # out: input_ids (corrupted, int32), mlm_labels (int32, 0 where not selected),
    #      mlm_weights (float32, 1.0 where selected)
    loader = make_loader(ds, ..., transform=masker)   # masker(batch, keys_B) as a transform
"""
from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterable

import numpy as np

from clowlab.errors import ClowlabError

_NUM_DRAWS = 3  # per token: selection score, action, random-token pick
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
  """What fraction to corrupt and how."""
  mask_prob: float = 0.15  # of maskable tokens (or words, with whole_word)
  mask_token_frac: float = 0.8  # of the selected: replaced by the mask token
  random_token_frac: float = 0.1  # of the selected: replaced by a random non-special token
  whole_word: bool = False  # select whole words via `word_ids`

  def __post_init__(self):
    if not 0.0 < self.mask_prob <= 1.0:
      raise ClowlabError(f"MaskingConfig.mask_prob={self.mask_prob} must be in (0, 1]. "
                         "Use e.g. 0.15.")
    if min(self.mask_token_frac, self.random_token_frac) < 0 or (
        self.mask_token_frac + self.random_token_frac > 1.0 + 1e-9):
      raise ClowlabError(f"MaskingConfig: mask_token_frac={self.mask_token_frac} and "
                         f"random_token_frac={self.random_token_frac} must be >= 0 and sum to "
                         "at most 1. Use e.g. 0.8 and 0.1.")


class MlmMasker:
  """MLM corruption for one vocabulary; also a loader transform `masker(batch, keys_B)`."""

  def __init__(self, *, vocab_size: int, mask_id: int, pad_id: int, special_ids: Iterable[int],
               config: MaskingConfig = MaskingConfig(), views: Iterable[str] | None = None):
    """views: for nested (pair / parallel) batches, which sub-batches to mask (default all)."""
    special = sorted({int(i) for i in special_ids} | {int(pad_id), int(mask_id)})
    if not 0 <= mask_id < vocab_size or any(not 0 <= i < vocab_size for i in special):
      raise ClowlabError(f"MlmMasker: mask_id={mask_id} / special_ids={special} must lie in "
                         f"[0, vocab_size={vocab_size}). Pass the tokenizer's own ids.")
    self.config = config
    self.mask_id, self.pad_id, self.vocab_size = int(mask_id), int(pad_id), int(vocab_size)
    self.views = None if views is None else tuple(views)
    self._maskable_V = np.ones(vocab_size, bool)  # lookup table: id -> may be selected
    self._maskable_V[special] = False
    self._random_ids = np.flatnonzero(self._maskable_V).astype(np.int32)

  @classmethod
  def from_tokenizer(cls, tok, config: MaskingConfig = MaskingConfig(), **kwargs) -> MlmMasker:
    return cls(vocab_size=tok.vocab_size, mask_id=tok.mask_id, pad_id=tok.pad_id,
               special_ids=tok.special_ids, config=config, **kwargs)

  def mask(self, input_ids_BL, *, rng: np.random.Generator | None = None,
           keys_B: np.ndarray | None = None, word_ids_BL=None) -> dict[str, np.ndarray]:
    """Corrupts a padded batch; randomness from `rng` or from per-row `keys_B` (exactly one)."""
    ids_BL = np.asarray(input_ids_BL)
    if ids_BL.ndim != 2:
      raise ClowlabError(f"MlmMasker.mask: input_ids must be [batch, length], got shape "
                         f"{ids_BL.shape}. Pad the rows to a common length first.")
    if (rng is None) == (keys_B is None):
      raise ClowlabError("MlmMasker.mask: pass exactly one of rng= (a np.random.Generator) or "
                         "keys_B= (one integer key per row).")
    if self.config.whole_word and word_ids_BL is None:
      raise ClowlabError("MaskingConfig.whole_word=True needs word_ids. Tokenize with word ids "
                         "(clowlab.data.pipeline.tokenize keeps them) or set whole_word=False.")
    batch, length = ids_BL.shape
    if rng is not None:
      u_BLD = rng.random((batch, length, _NUM_DRAWS))
      u_round_B = rng.random(batch)
    else:
      keys_B = np.asarray(keys_B, np.uint64)
      u_BLD = key_uniforms(keys_B, length, _NUM_DRAWS)
      u_round_B = key_uniforms(mix64(keys_B ^ _GOLDEN), 1, 1)[:, 0, 0]
    return mask_with_uniforms(
        ids_BL, u_BLD, u_round_B, maskable_V=self._maskable_V, random_ids=self._random_ids,
        mask_id=self.mask_id, config=self.config,
        word_ids_BL=None if word_ids_BL is None else np.asarray(word_ids_BL))

  def __call__(self, batch: dict, keys_B: np.ndarray) -> dict:
    """Loader transform: masks `batch` (or each of its view sub-dicts) in place of input_ids."""
    if "input_ids" in batch:
      return {**batch, **self._mask_view(batch, keys_B)}
    out = dict(batch)
    for name, view in batch.items():
      if isinstance(view, dict) and "input_ids" in view and (
          self.views is None or name in self.views):
        salt = np.uint64(zlib.crc32(name.encode()))  # independent masks per view
        out[name] = {**view, **self._mask_view(view, mix64(keys_B ^ salt))}
    return out

  def _mask_view(self, view: dict, keys_B) -> dict:
    word_ids = view.get("word_ids") if self.config.whole_word else None
    return self.mask(view["input_ids"], keys_B=keys_B, word_ids_BL=word_ids)


def mask_tokens(input_ids_BL, *, rng: np.random.Generator, vocab_size: int, mask_id: int,
                pad_id: int, special_ids: Iterable[int], word_ids_BL=None,
                config: MaskingConfig = MaskingConfig()) -> dict[str, np.ndarray]:
  """One-off functional form of `MlmMasker(...).mask(input_ids_BL, rng=rng)`."""
  masker = MlmMasker(vocab_size=vocab_size, mask_id=mask_id, pad_id=pad_id,
                     special_ids=special_ids, config=config)
  return masker.mask(input_ids_BL, rng=rng, word_ids_BL=word_ids_BL)


def mask_with_uniforms(ids_BL: np.ndarray, u_BLD: np.ndarray, u_round_B: np.ndarray, *,
                       maskable_V: np.ndarray, random_ids: np.ndarray, mask_id: int,
                       config: MaskingConfig, word_ids_BL: np.ndarray | None = None) -> dict:
  """The masking itself, given uniforms in [0, 1): u_BLD [B, L, 3] and u_round_B [B]."""
  batch, length = ids_BL.shape
  positions_L = np.arange(length)
  maskable_BL = maskable_V[np.clip(ids_BL, 0, len(maskable_V) - 1)] & (ids_BL >= 0) & (
      ids_BL < len(maskable_V))
  # A unit is what gets selected: a token, or (whole_word) the first token of a word.
  if config.whole_word:
    prev_word_BL = np.pad(word_ids_BL[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
    prev_maskable_BL = np.pad(maskable_BL[:, :-1], ((0, 0), (1, 0)))
    start_BL = maskable_BL & ((word_ids_BL != prev_word_BL) | ~prev_maskable_BL | (word_ids_BL < 0))
  else:
    start_BL = maskable_BL
  units_B = start_BL.sum(1)
  k_B = np.floor(units_B * config.mask_prob + u_round_B).astype(np.int64)
  k_B = np.clip(k_B, np.minimum(units_B, 1), units_B)
  # Select the k units with the smallest scores: rank of each position among its row.
  score_BL = np.where(start_BL, u_BLD[:, :, 0], 2.0)
  order_BL = np.argsort(score_BL, axis=1, kind="stable")
  rank_BL = np.empty_like(order_BL)
  np.put_along_axis(rank_BL, order_BL, np.broadcast_to(positions_L, (batch, length)), axis=1)
  chosen_BL = start_BL & (rank_BL < k_B[:, None])
  if config.whole_word:
    # Every token of a word follows its start; carry the start's decision forward.
    start_pos_BL = np.maximum.accumulate(np.where(start_BL, positions_L, 0), axis=1)
    chosen_BL = maskable_BL & np.take_along_axis(chosen_BL, start_pos_BL, axis=1)
  action_BL = u_BLD[:, :, 1]
  to_mask_BL = chosen_BL & (action_BL < config.mask_token_frac)
  to_random_BL = chosen_BL & ~to_mask_BL & (
      action_BL < config.mask_token_frac + config.random_token_frac)
  pick_BL = np.minimum((u_BLD[:, :, 2] * len(random_ids)).astype(np.int64), len(random_ids) - 1)
  corrupted_BL = np.where(to_mask_BL, mask_id, ids_BL)
  corrupted_BL = np.where(to_random_BL, random_ids[pick_BL], corrupted_BL)
  return {
      "input_ids": corrupted_BL.astype(np.int32),
      "mlm_labels": np.where(chosen_BL, ids_BL, 0).astype(np.int32),
      "mlm_weights": chosen_BL.astype(np.float32),
  }


# ----------------------------------------------------------------------------------------------
# Counter-based randomness: uniforms as a pure function of (key, position, draw).


def mix64(x: np.ndarray) -> np.ndarray:
  """SplitMix64 finaliser: a bijective hash of uint64s (wrapping arithmetic is intended)."""
  x = np.asarray(x, np.uint64)
  with np.errstate(over="ignore"):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def row_keys(seed: int, epoch: int, records_B: np.ndarray) -> np.ndarray:
  """One uint64 key per row from (seed, epoch, record index); the loader's per-row randomness."""
  base = mix64(mix64(np.uint64(seed % 2**64)) ^ np.uint64(epoch % 2**64))
  records_B = np.asarray(records_B, np.int64).astype(np.uint64)  # -1 (padding row) wraps
  return mix64(base ^ mix64(records_B + _GOLDEN))


def key_uniforms(keys_B: np.ndarray, length: int, draws: int) -> np.ndarray:
  """Uniforms [B, length, draws] in [0, 1); entry (b, t, d) depends only on (keys_B[b], t, d)."""
  counters = np.arange(1, length * draws + 1, dtype=np.uint64).reshape(length, draws)
  with np.errstate(over="ignore"):
    x = mix64(np.asarray(keys_B, np.uint64)[:, None, None] + counters * _GOLDEN)
  return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
