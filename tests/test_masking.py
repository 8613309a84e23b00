"""MLM masking: rates, never-selected specials/pads, whole words, determinism, key independence."""
import numpy as np
import pytest

from clowlab.data import masking
from clowlab.data.masking import MaskingConfig, MlmMasker
from clowlab.errors import ClowlabError

VOCAB, PAD, UNK, CLS, SEP, MASK = 1000, 0, 100, 101, 102, 103
SPECIAL = (PAD, UNK, CLS, SEP, MASK)


def _masker(**config):
  return MlmMasker(vocab_size=VOCAB, mask_id=MASK, pad_id=PAD, special_ids=SPECIAL,
                   config=MaskingConfig(**config))


def _batch(rows=512, length=128, seed=0):
  """[CLS] tokens [SEP] pad..., with word ids in runs of 1-3 tokens (-1 at specials/pads)."""
  rng = np.random.default_rng(seed)
  ids = np.full((rows, length), PAD, np.int32)
  words = np.full((rows, length), -1, np.int32)
  for r in range(rows):
    n = int(rng.integers(1, length - 2))
    ids[r, 0], ids[r, n + 1] = CLS, SEP
    ids[r, 1:n + 1] = rng.integers(200, VOCAB, n)
    word_sizes = rng.integers(1, 4, n)
    words[r, 1:n + 1] = np.repeat(np.arange(n), word_sizes)[:n]
  return ids, words


def _maskable(ids):
  return ~np.isin(ids, SPECIAL)


def test_rates_match_config():
  ids, _ = _batch()
  out = _masker().mask(ids, rng=np.random.default_rng(1))
  chosen = out["mlm_weights"] > 0
  assert abs(chosen.sum() / _maskable(ids).sum() - 0.15) < 0.01
  n = chosen.sum()
  to_mask = (out["input_ids"] == MASK) & chosen
  changed = (out["input_ids"] != ids) & chosen & ~to_mask
  kept = (out["input_ids"] == ids) & chosen
  assert abs(to_mask.sum() / n - 0.8) < 0.02
  assert abs(changed.sum() / n - 0.1) < 0.02
  assert abs(kept.sum() / n - 0.1) < 0.02
  # Random replacements are spread over the vocabulary, never special.
  assert not np.isin(out["input_ids"][changed], SPECIAL).any()
  assert len(np.unique(out["input_ids"][changed])) > 0.5 * changed.sum()


def test_configurable_rates():
  ids, _ = _batch(rows=256)
  out = _masker(mask_prob=0.3, mask_token_frac=1.0, random_token_frac=0.0).mask(
      ids, rng=np.random.default_rng(2))
  chosen = out["mlm_weights"] > 0
  assert abs(chosen.sum() / _maskable(ids).sum() - 0.3) < 0.015
  assert (out["input_ids"][chosen] == MASK).all()


def test_specials_and_pads_never_selected_and_untouched():
  ids, _ = _batch(rows=256)
  out = _masker(mask_prob=0.9).mask(ids, rng=np.random.default_rng(3))
  chosen = out["mlm_weights"] > 0
  assert not chosen[~_maskable(ids)].any()
  np.testing.assert_array_equal(out["input_ids"][~chosen], ids[~chosen])
  np.testing.assert_array_equal(out["mlm_labels"][chosen], ids[chosen])
  assert (out["mlm_labels"][~chosen] == 0).all()
  assert out["input_ids"].dtype == np.int32 and out["mlm_labels"].dtype == np.int32
  assert out["mlm_weights"].dtype == np.float32


def test_at_least_one_per_nonempty_row():
  ids = np.array([[CLS, 500, SEP, PAD],      # one maskable token: always selected
                  [CLS, SEP, PAD, PAD],      # nothing maskable: nothing selected
                  [PAD, PAD, PAD, PAD],
                  [CLS, 300, 301, SEP]], np.int32)
  for seed in range(20):
    weights = _masker().mask(ids, rng=np.random.default_rng(seed))["mlm_weights"]
    assert weights[0, 1] == 1 and weights[0].sum() == 1
    assert weights[1].sum() == 0 and weights[2].sum() == 0
    assert weights[3].sum() >= 1


def test_whole_word_masks_complete_words():
  ids, words = _batch(rows=256)
  out = _masker(whole_word=True).mask(ids, rng=np.random.default_rng(4), word_ids_BL=words)
  chosen = out["mlm_weights"] > 0
  n_words = n_chosen_words = 0
  for r in range(len(ids)):
    for w in np.unique(words[r][words[r] >= 0]):
      group = chosen[r][words[r] == w]
      assert group.all() or not group.any(), f"row {r} word {w} partially selected"
      n_words += 1
      n_chosen_words += bool(group.any())
  assert abs(n_chosen_words / n_words - 0.15) < 0.015


def test_whole_word_needs_word_ids():
  ids, _ = _batch(rows=2)
  with pytest.raises(ClowlabError, match="word_ids"):
    _masker(whole_word=True).mask(ids, rng=np.random.default_rng(0))


def test_deterministic_from_generator_seed():
  ids, _ = _batch(rows=64)
  a = _masker().mask(ids, rng=np.random.default_rng(7))
  b = _masker().mask(ids, rng=np.random.default_rng(7))
  c = _masker().mask(ids, rng=np.random.default_rng(8))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["mlm_weights"], c["mlm_weights"])


def test_mask_tokens_function_matches_masker():
  ids, _ = _batch(rows=16)
  a = masking.mask_tokens(ids, rng=np.random.default_rng(5), vocab_size=VOCAB, mask_id=MASK,
                          pad_id=PAD, special_ids=SPECIAL)
  b = _masker().mask(ids, rng=np.random.default_rng(5))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_keyed_rows_do_not_depend_on_batch_or_padding():
  """With per-row keys a row's mask is the same alone, in any batch, at any padded length."""
  ids, _ = _batch(rows=32, length=64)
  keys = masking.row_keys(3, 1, np.arange(32))
  full = _masker().mask(np.pad(ids, ((0, 0), (0, 64)), constant_values=PAD), keys_B=keys)
  single = _masker().mask(ids[5:6], keys_B=keys[5:6])
  reordered = _masker().mask(ids[::-1], keys_B=keys[::-1])
  for k in full:
    np.testing.assert_array_equal(full[k][5, :64], single[k][0])
    np.testing.assert_array_equal(full[k][:, :64], reordered[k][::-1])
  other_epoch = _masker().mask(ids, keys_B=masking.row_keys(3, 2, np.arange(32)))
  assert not np.array_equal(full["mlm_weights"], other_epoch["mlm_weights"])


def test_key_uniforms_are_uniform_and_independent_of_length():
  keys = masking.row_keys(0, 0, np.arange(64))
  u = masking.key_uniforms(keys, 256, 3)
  assert u.shape == (64, 256, 3) and 0 <= u.min() and u.max() < 1
  assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
  np.testing.assert_array_equal(masking.key_uniforms(keys, 10, 3), u[:, :10])


def test_transform_masks_each_view_independently():
  ids, words = _batch(rows=8, length=32)
  view = {"input_ids": ids, "word_ids": words, "attention_mask": (ids != PAD).astype(np.int32)}
  keys = masking.row_keys(0, 0, np.arange(8))
  out = _masker()({"a": view, "b": dict(view), "label": np.zeros(8)}, keys)
  assert set(out["a"]) == {"input_ids", "word_ids", "attention_mask", "mlm_labels", "mlm_weights"}
  assert not np.array_equal(out["a"]["mlm_weights"], out["b"]["mlm_weights"])
  only_a = MlmMasker(vocab_size=VOCAB, mask_id=MASK, pad_id=PAD, special_ids=SPECIAL,
                     views=("a",))({"a": view, "b": view}, keys)
  assert "mlm_labels" not in only_a["b"]
  flat = _masker()(view, keys)
  np.testing.assert_array_equal(flat["input_ids"], _masker().mask(ids, keys_B=keys)["input_ids"])


def test_bad_config_raises():
  with pytest.raises(ClowlabError, match="mask_prob"):
    MaskingConfig(mask_prob=0.0)
  with pytest.raises(ClowlabError, match="sum to"):
    MaskingConfig(mask_token_frac=0.8, random_token_frac=0.3)
  with pytest.raises(ClowlabError, match="exactly one"):
    _masker().mask(np.zeros((1, 4), np.int32))
