"""Tokenize once (cached Arrow), then serve static-shape, per-host, checkpointable batches.

    ds = sources.load_text("wiki.txt")                       # or load_pairs / load_parallel
    tok_ds = tokenize(ds, tok, seq_len=128)                   # cached in cache_dir
    loader = make_loader(tok_ds, global_batch_size=32, seed=0,
                         transform=MlmMasker.from_tokenizer(tok))
    batch = next(loader)           # dict of numpy arrays, this host's rows of global batch 0
    state = loader.get_state()     # small JSON-able dict; loader.set_state(state) resumes exactly

Views. A tokenized dataset holds one or more *views*, each an encoded sequence per record:
  single text (`text`):          ""  -> batch keys at top level
  pairs (`text_a`, `text_b`):    "a", "b" (separately, for bi-encoders), "ab" (jointly, for
                                 cross-encoders: [CLS] a [SEP] b [SEP])
  triples (+ `text_c`):          "a", "b", "c" (anchor, positive, hard negative)
  parallel (`src`, `tgt`):       "src", "tgt", "src_tgt" (jointly, for translation LM)
Batch format (all arrays [b, L] int32 unless noted; b = global_batch_size // process_count):
  single: {input_ids, attention_mask, token_type_ids, word_ids, index[b][, label[b]]}
  pairs:  {"a": {input_ids, attention_mask, token_type_ids, word_ids}, "b": {...}[, "ab": {...}],
           index[b][, label[b]]}
  triples: {"a": {...}, "b": {...}, "c": {...}, index[b]}
  parallel: {"src": {...}, "tgt": {...}[, "src_tgt": {...}], index[b]}
  `index` is the record index in the dataset (-1 for padding rows); `word_ids` is -1 at special
  tokens and padding. With drop_remainder=False a bool `valid[b]` marks real rows. A transform
  such as MLM masking adds its own keys (mlm_labels, mlm_weights).

Order and sharding. Epoch e visits every record once in a Grain shuffle of (seed, e); global
batch k of the epoch is rows [k*B, (k+1)*B) of that order and host i gets rows
[i*b, (i+1)*b) of it, so the hosts' batches concatenate to the single-host global batch.
Random transforms receive one key per row derived from (seed, epoch, record index) only.

Bucketing. With `buckets=(32, 64, 128)` each batch is padded to the smallest bucket that holds
the longest row of the *global* batch (per view group: separately encoded views share one
length, the joint view has its own), so every host gets the same shape and a run sees at most
len(buckets) shapes per group (one compilation each). The bucket is a pure function of (seed,
epoch, step), so restored iterators reproduce shapes exactly; masks are unaffected because they
are keyed per row and position. With several hosts each host computes the record ids of the
whole global batch (cheap integers; it still reads only its own rows).

State. `get_state()` -> {"step", "epoch", "position", plus the settings that define the order}.
`step` counts global batches from the start; restoring needs the same data, global batch size,
seed, shuffle and drop_remainder (checked), but not the same process count.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence

import datasets
import grain
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.fingerprint import Hasher

from clowlab.data import masking, sources
from clowlab.errors import ClowlabError

# Bump when the tokenized layout changes, so stale caches are not reused.
_TOKENIZE_VERSION = 1
FIELDS = ("input_ids", "token_type_ids", "word_ids")
_FIELD_DTYPES = {"input_ids": "int32", "token_type_ids": "int8", "word_ids": "int32"}
# kind -> (text columns, {view: (first text column, second text column or None)}, default views)
KINDS = {
    "text": (("text",), {"": ("text", None)}, ("",)),
    # Before "pairs": infer_kind takes the first kind whose columns are all present.
    "triples": (("text_a", "text_b", "text_c"),
                {"a": ("text_a", None), "b": ("text_b", None), "c": ("text_c", None)},
                ("a", "b", "c")),
    "pairs": (("text_a", "text_b"),
              {"a": ("text_a", None), "b": ("text_b", None), "ab": ("text_a", "text_b")},
              ("a", "b")),
    "parallel": (("src", "tgt"),
                 {"src": ("src", None), "tgt": ("tgt", None), "src_tgt": ("src", "tgt")},
                 ("src", "tgt")),
}
_JOINT_VIEWS = ("ab", "src_tgt")
_META_KEY = "clowlab_tokenized"

Transform = Callable[[dict, np.ndarray], dict]


def column(view: str, field: str) -> str:
  """Column name of one field of one view in a tokenized dataset ('a.input_ids', 'input_ids')."""
  return f"{view}.{field}" if view else field


# ----------------------------------------------------------------------------------------------
# Tokenization


def tokenize(ds: datasets.Dataset, tokenizer, *, seq_len: int, views: Sequence[str] | None = None,
             cache_dir: str | None = None, num_proc: int | None = None,
             batch_size: int = 1000) -> datasets.Dataset:
  """Encodes every view of `ds` (truncated to seq_len incl. special tokens) into a cached dataset.

  ds: a dataset from `sources` (columns text | text_a, text_b[, label] | src, tgt).
  views: which encodings to store (see module doc); default the separately encoded views. Pass
    e.g. ("a", "b", "ab") to also store the joint pair encoding, or ("ab",) for cross-encoders.
  The result is written once to cache_dir/tokenized/<fingerprint>.arrow (fingerprint of the
  input data, the tokenizer, seq_len and views) and memory-mapped on later calls. A `label`
  column passes through; other columns are dropped.
  """
  kind = infer_kind(ds.column_names)
  text_columns, all_views, default_views = KINDS[kind]
  views = tuple(default_views if views is None else views)
  unknown = [v for v in views if v not in all_views]
  if unknown or not views:
    raise ClowlabError(f"tokenize: views={views!r} are not valid for {kind} data. "
                       f"Choose from {list(all_views)}.")
  if not isinstance(seq_len, int) or seq_len < 2:
    raise ClowlabError(f"tokenize: seq_len={seq_len!r} must be an integer >= 2. Use e.g. 128.")
  spec = {column(v, f): datasets.List(datasets.Value(_FIELD_DTYPES[f]))
          for v in views for f in FIELDS}
  if "label" in ds.column_names:
    spec["label"] = ds.features["label"]
  cache_dir = os.path.join(
      os.path.abspath(os.path.expanduser(cache_dir or sources.default_cache_dir())), "tokenized")
  os.makedirs(cache_dir, exist_ok=True)
  fingerprint = Hasher.hash((_TOKENIZE_VERSION, ds._fingerprint,  # pylint: disable=protected-access
                             _tokenizer_fingerprint(tokenizer), seq_len, views))
  out = ds.map(
      _encode_batch, batched=True, batch_size=batch_size, num_proc=num_proc,
      fn_kwargs={"tokenizer": tokenizer, "views": {v: all_views[v] for v in views},
                 "seq_len": seq_len},
      remove_columns=[c for c in ds.column_names if c != "label"],
      features=datasets.Features(spec), new_fingerprint=fingerprint,
      cache_file_name=os.path.join(cache_dir, f"{fingerprint}.arrow"), desc="Tokenizing")
  description = {_META_KEY: {"kind": kind, "views": list(views), "seq_len": seq_len,
                             "pad_id": int(tokenizer.pad_id)}}
  origin = sources.source_names(ds)
  if origin:  # kept so that loader errors can name the files
    description[sources.SOURCES_KEY] = origin
  out.info.description = json.dumps(description)
  return out


def infer_kind(columns: Sequence[str]) -> str:
  """'text' | 'triples' | 'pairs' | 'parallel' from a source dataset's columns."""
  for kind, (text_columns, _, _) in KINDS.items():
    if all(c in columns for c in text_columns):
      return kind
  raise ClowlabError(f"Cannot tell what kind of data has columns {list(columns)}. Build it with "
                     "clowlab.data.sources (columns text | text_a, text_b[, text_c] | src, tgt).")


def _encode_batch(batch: dict, *, tokenizer, views: dict, seq_len: int) -> dict:
  out = {}
  for view, (first, second) in views.items():
    enc = tokenizer.encode(batch[first], None if second is None else batch[second],
                           max_len=seq_len)
    for f in FIELDS:
      out[column(view, f)] = enc[f]
  return out


def _tokenizer_fingerprint(tokenizer) -> str:
  """A stable hash of the tokenizer (its own `fingerprint` attribute if it has one)."""
  fingerprint = getattr(tokenizer, "fingerprint", None)
  return fingerprint if isinstance(fingerprint, str) else Hasher.hash(tokenizer)


def tokenized_metadata(ds: datasets.Dataset) -> dict:
  """What `tokenize` recorded (kind, views, seq_len, pad_id), or {} for other datasets."""
  try:
    return json.loads(ds.info.description or "{}").get(_META_KEY, {})
  except (json.JSONDecodeError, AttributeError):
    return {}


# ----------------------------------------------------------------------------------------------
# Loader


def make_loader(ds: datasets.Dataset, *, global_batch_size: int, seed: int,
                seq_len: int | None = None, shuffle: bool = True, num_epochs: int | None = None,
                process_index: int | None = None, process_count: int | None = None,
                transform: Transform | None = None, drop_remainder: bool = True,
                buckets: Sequence[int] | None = None, pad_id: int | None = None,
                num_threads: int = 2, prefetch: int = 4) -> Loader:
  """An iterator over this host's share of each global batch (see the module doc).

  ds: output of `tokenize`.
  seq_len: padded length (default: the seq_len the data was tokenized with); with `buckets`,
    the largest bucket.
  num_epochs: None repeats forever; otherwise iteration stops after that many epochs.
  process_index / process_count: default jax.process_index() / jax.process_count().
  transform: `transform(batch, keys_B) -> batch`, run on each host batch; keys_B are uint64 per-row
    keys from (seed, epoch, record) to derive all randomness from (e.g. `masking.MlmMasker`).
  drop_remainder: drop the last partial global batch of each epoch; if False it is padded with
    empty rows and every batch carries `valid[b]`.
  buckets: optional padded lengths to choose from per batch (see module doc).
  pad_id: padding id (default: recorded by `tokenize`).
  num_threads / prefetch: Grain reader threads and batches buffered ahead (0 threads: synchronous).
  """
  if process_index is None or process_count is None:
    import jax  # pylint: disable=import-outside-toplevel
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return Loader(ds, global_batch_size=global_batch_size, seed=seed, seq_len=seq_len,
                shuffle=shuffle, num_epochs=num_epochs, process_index=process_index,
                process_count=process_count, transform=transform, drop_remainder=drop_remainder,
                buckets=buckets, pad_id=pad_id, num_threads=num_threads, prefetch=prefetch)


class Loader(Iterator[dict]):
  """Per-host batch iterator over a tokenized dataset; build it with `make_loader`."""

  def __init__(self, ds: datasets.Dataset, *, global_batch_size: int, seed: int,
               seq_len: int | None, shuffle: bool, num_epochs: int | None, process_index: int,
               process_count: int, transform: Transform | None, drop_remainder: bool,
               buckets: Sequence[int] | None, pad_id: int | None, num_threads: int,
               prefetch: int):
    meta = tokenized_metadata(ds)
    self.views = _find_views(ds)
    self.num_rows = len(ds)
    self.global_batch_size = global_batch_size
    self.batch_size = _host_batch_size(global_batch_size, process_index, process_count)
    self.process_index, self.process_count = process_index, process_count
    self.seed, self.shuffle, self.drop_remainder = seed, shuffle, drop_remainder
    self.num_epochs = num_epochs
    self.pad_id = _pick(pad_id, meta.get("pad_id"), "pad_id", "the tokenizer's pad_id")
    self.seq_len = _pick(seq_len, meta.get("seq_len"), "seq_len", "the padded length, e.g. 128")
    self.buckets = _check_buckets(buckets, self.seq_len)
    self.transform = transform
    if not isinstance(seed, int) or seed < 0:
      raise ClowlabError(f"make_loader: seed={seed!r} must be a non-negative integer.")
    if num_epochs is not None and (not isinstance(num_epochs, int) or num_epochs < 1):
      raise ClowlabError(f"make_loader: num_epochs={num_epochs!r} must be a positive integer or "
                         "None (repeat forever).")
    if self.num_rows == 0 or (drop_remainder and self.num_rows < global_batch_size):
      origin = sources.source_names(ds)
      origin = f" (read from {origin})" if origin else ""
      raise ClowlabError(f"make_loader: the dataset{origin} has {self.num_rows} rows, fewer than "
                         f"global_batch_size={global_batch_size}, so no full batch exists. Use a "
                         "smaller batch or more data (or drop_remainder=False).")
    self.steps_per_epoch = (self.num_rows // global_batch_size if drop_remainder else
                            -(-self.num_rows // global_batch_size))
    self._arrow = ds.select_columns(
        [column(v, f) for v in self.views for f in FIELDS] +
        (["label"] if "label" in ds.column_names else [])).with_format("arrow")
    self._lengths = {v: _list_lengths(self._arrow[column(v, "input_ids")]) for v in self.views}
    if "label" in ds.column_names:
      self._label_dtype = _jit_dtype(ds.features["label"])
    longest = max(int(n.max()) for n in self._lengths.values())
    if longest > self.seq_len:
      raise ClowlabError(f"make_loader: the data has rows of {longest} tokens but seq_len="
                         f"{self.seq_len}. Tokenize with seq_len={self.seq_len} (or raise "
                         "seq_len).")
    # Bucketing on several hosts needs the whole global batch's lengths (see module doc).
    self._global_ids = self.buckets is not None and process_count > 1
    read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    self._iter = self._batches().to_iter_dataset(read).__iter__()

  # ---- iteration and state --------------------------------------------------------------------

  def __iter__(self) -> Loader:
    return self

  def __next__(self) -> dict:
    return next(self._iter)

  def __len__(self) -> int:
    """Batches this loader yields in total (num_epochs * steps_per_epoch); infinite -> error."""
    if self.num_epochs is None:
      raise TypeError("An infinite loader (num_epochs=None) has no length.")
    return self.num_epochs * self.steps_per_epoch

  def get_state(self) -> dict:
    """JSON-able position: the next global step plus the settings that define the order."""
    step = int(grain.experimental.get_next_index(self._iter))
    return {"step": step, "epoch": step // self.steps_per_epoch,
            "position": (step % self.steps_per_epoch) * self.global_batch_size,
            **self._identity()}

  def set_state(self, state: dict) -> None:
    """Resumes at `state["step"]`; the order-defining settings must match this loader's."""
    mine = self._identity()
    for key, value in mine.items():
      if key in state and state[key] != value:
        raise ClowlabError(f"Loader state was saved with {key}={state[key]!r} but this loader has "
                           f"{key}={value!r}. Resume with the same data and loader settings "
                           "(global_batch_size, seed, shuffle, drop_remainder).")
    step = state.get("step")
    if not isinstance(step, int) or step < 0:
      raise ClowlabError(f"Loader state has step={step!r}; expected a non-negative integer. Pass a "
                         "dict returned by Loader.get_state().")
    grain.experimental.set_next_index(self._iter, step)

  def close(self) -> None:
    self._iter.close()

  def _identity(self) -> dict:
    return {"num_rows": self.num_rows, "global_batch_size": self.global_batch_size,
            "seed": self.seed, "shuffle": self.shuffle, "drop_remainder": self.drop_remainder}

  # ---- the Grain pipeline ---------------------------------------------------------------------

  def _batches(self) -> grain.MapDataset:
    """MapDataset whose element k is this host's batch of global step k."""
    order = grain.MapDataset.range(self.num_rows)
    if self.shuffle:
      order = order.shuffle(seed=_grain_seed(self.seed))  # reseeded per epoch by repeat()
    epoch_rows = self.steps_per_epoch * self.global_batch_size
    if self.drop_remainder:
      order = order.slice(slice(0, epoch_rows))
    else:
      order = _PadEpoch(order, epoch_rows)
    if self._global_ids:
      chunks = order.batch(self.global_batch_size, batch_fn=np.asarray).repeat(self.num_epochs)
    else:  # host i takes chunks i, i + P, ...: its slice of each global batch
      chunks = order.batch(self.batch_size, batch_fn=np.asarray).repeat(self.num_epochs)
      chunks = chunks.slice(slice(self.process_index, None, self.process_count))
    return chunks.map_with_index(self._make_batch)

  def _make_batch(self, step: int, ids: np.ndarray) -> dict:
    global_ids = ids if self._global_ids else None
    if global_ids is not None:
      ids = ids[self.process_index * self.batch_size:(self.process_index + 1) * self.batch_size]
    ids = np.asarray(ids, np.int64)
    rows_R = np.flatnonzero(ids >= 0)
    table = self._arrow[ids[rows_R].tolist()] if len(rows_R) else None
    lengths = self._pad_lengths(ids if global_ids is None else global_ids)
    batch = {}
    for view in self.views:
      arrays = self._view_arrays(table, view, rows_R, lengths[view in _JOINT_VIEWS])
      if view:
        batch[view] = arrays
      else:
        batch.update(arrays)
    batch["index"] = ids.astype(np.int32)
    if "label" in self._arrow.column_names:
      labels = np.zeros(len(ids), self._label_dtype)
      if table is not None:
        labels[rows_R] = table.column("label").to_numpy()
      batch["label"] = labels
    if not self.drop_remainder:
      batch["valid"] = ids >= 0
    if self.transform is not None:
      epoch = step // self.steps_per_epoch
      batch = self.transform(batch, masking.row_keys(self.seed, epoch, ids))
    return batch

  def _pad_lengths(self, ids: np.ndarray) -> dict[bool, int]:
    """Padded length for separate views (False) and joint views (True) of this global batch."""
    if self.buckets is None:
      return {False: self.seq_len, True: self.seq_len}
    ids = ids[ids >= 0]
    out = {}
    for joint in (False, True):
      group = [self._lengths[v][ids] for v in self.views if (v in _JOINT_VIEWS) == joint]
      longest = max((int(n.max()) for n in group if n.size), default=0)
      out[joint] = next(b for b in self.buckets if b >= longest)
    return out

  def _view_arrays(self, table: pa.Table | None, view: str, rows_R: np.ndarray,
                   length: int) -> dict[str, np.ndarray]:
    batch = self.batch_size
    fill = {"input_ids": self.pad_id, "token_type_ids": 0, "word_ids": -1}
    out = {f: np.full((batch, length), fill[f], np.int32) for f in FIELDS}
    lengths_B = np.zeros(batch, np.int32)
    if table is not None:
      lists = {f: table.column(column(view, f)).combine_chunks() for f in FIELDS}
      lengths_R = lists["input_ids"].value_lengths().to_numpy(zero_copy_only=False)
      lengths_B[rows_R] = lengths_R
      # Token t of the flattened lists goes to (row_T[t], col_T[t]); same for every field.
      starts_R = np.cumsum(lengths_R) - lengths_R
      row_T = np.repeat(rows_R, lengths_R)
      col_T = np.arange(len(row_T)) - np.repeat(starts_R, lengths_R)
      for f in FIELDS:
        out[f][row_T, col_T] = lists[f].flatten().to_numpy(zero_copy_only=False)
    out["attention_mask"] = (np.arange(length) < lengths_B[:, None]).astype(np.int32)
    return {k: out[k] for k in ("input_ids", "attention_mask", "token_type_ids", "word_ids")}


class _PadEpoch(grain.MapDataset):
  """Extends each epoch of `parent` to `length` elements with -1 (padding rows)."""

  def __init__(self, parent: grain.MapDataset, length: int):
    super().__init__(parent)
    self._parent_length, self._length = len(parent), length

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    epoch, position = divmod(index, self._length)
    if position >= self._parent_length:
      return -1
    return self._parent[epoch * self._parent_length + position]


# ----------------------------------------------------------------------------------------------
# Helpers


def _list_lengths(col) -> np.ndarray:
  if isinstance(col, pa.ChunkedArray):
    col = col.combine_chunks()
  return pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int32)


def _find_views(ds: datasets.Dataset) -> tuple[str, ...]:
  views = tuple(c.removesuffix("input_ids").removesuffix(".") for c in ds.column_names
                if c == "input_ids" or c.endswith(".input_ids"))
  if not views:
    raise ClowlabError(f"make_loader: the dataset has no input_ids column (columns "
                       f"{ds.column_names}). Pass the output of clowlab.data.pipeline.tokenize.")
  missing = [column(v, f) for v in views for f in FIELDS if column(v, f) not in ds.column_names]
  if missing:
    raise ClowlabError(f"make_loader: the dataset lacks columns {missing}. Pass the output of "
                       "clowlab.data.pipeline.tokenize.")
  return views


def _host_batch_size(global_batch_size: int, process_index: int, process_count: int) -> int:
  if not isinstance(global_batch_size, int) or global_batch_size < 1:
    raise ClowlabError(f"make_loader: global_batch_size={global_batch_size!r} must be a positive "
                       "integer.")
  if not isinstance(process_count, int) or process_count < 1 or not (
      isinstance(process_index, int) and 0 <= process_index < process_count):
    raise ClowlabError(f"make_loader: process_index={process_index!r} must be in "
                       f"[0, process_count={process_count!r}).")
  if global_batch_size % process_count:
    raise ClowlabError(f"make_loader: global_batch_size={global_batch_size} is not divisible by "
                       f"the process count {process_count}. Use a multiple of {process_count}.")
  return global_batch_size // process_count


def _pick(given, recorded, name: str, what: str):
  value = given if given is not None else recorded
  if value is None:
    raise ClowlabError(f"make_loader: {name} is not known for this dataset (it was not built by "
                       f"clowlab.data.pipeline.tokenize). Pass {name}= ({what}).")
  return int(value)


def _check_buckets(buckets: Sequence[int] | None, seq_len: int) -> tuple[int, ...] | None:
  if buckets is None:
    return None
  buckets = tuple(sorted({int(b) for b in buckets}))
  if not buckets or buckets[0] < 1 or buckets[-1] > seq_len:
    raise ClowlabError(f"make_loader: buckets={buckets} must be positive lengths no larger than "
                       f"seq_len={seq_len}. Use e.g. (32, 64, {seq_len}).")
  return buckets if buckets[-1] == seq_len else buckets + (seq_len,)


def _jit_dtype(feature) -> np.dtype:
  """float32 / int32 / bool for a label column (JAX runs without 64-bit types by default)."""
  dtype = np.dtype(getattr(feature, "pa_type", pa.float32()).to_pandas_dtype())
  if dtype.kind == "f":
    return np.dtype(np.float32)
  if dtype.kind in "iu":
    return np.dtype(np.int32)
  if dtype.kind == "b":
    return dtype
  raise ClowlabError(f"make_loader: the label column has type {feature}; expected numbers. Map "
                     "labels to numbers when loading (load_pairs(label_map=...)).")


def _grain_seed(seed: int) -> int:
  # Grain shuffles epoch e with seed + e; hashing keeps nearby user seeds from sharing epochs.
  return int(masking.row_keys(seed, 0, np.zeros(1))[0] % np.uint64(2**32))
