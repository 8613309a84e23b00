"""GLUE-style finetuning: judge a pretrained encoder by training it with a linear head on a
labelled file and scoring the dev file after every epoch.

    r = finetune.run("runs/simcse", "RTE/train.tsv", "RTE/dev.tsv",
                     columns=("sentence1", "sentence2", "label"))
    # {"accuracy": 66.4, "f1": 65.0, "matthews": 32.9, "best": {"epoch": 2, ...},
    #  "label_map": {"entailment": 0, "not_entailment": 1}, "steps": 234, ...}

Data. One CSV, TSV or JSONL file each for train and dev, parsed by `sources.read_columns` (TSV
without quote processing: GLUE TSVs hold bare quotes). `columns` = (text[, text_b], label) as
header names or 0-based indices; indices mean a headerless file (CoLA).
Labels. Regression when asked, or when every train label is a number and one is not an integer
(STS-B's 3.8); else classification: the ids are the sorted distinct train labels (numerically if
all are integers, else as text), so label id 1 is the second label in that order. A dev label
the train file lacks is an error.
Model. The encoder of `loading.load_model` (clowlab workdir or HF directory), BERT's tanh pooler
over [CLS] (initialised fresh when the checkpoint has none), dropout 0.1 and a linear head, as
HF's BertForSequenceClassification; cross-entropy, or MSE on one output for regression.
Training. AdamW (`clowlab.optim`): lr 2e-5 warmed up over the first 10 % of steps then decayed
linearly to 0, weight decay 0.01 (not on biases / LayerNorm), global-norm clipping at 1, batch
32, 3 epochs. Dropout draws from fold_in(key, step). Each epoch is a seeded shuffle whose chunks
of 32 batches are sorted by length, so rows are padded only to the batch's length bucket
(16, 32, 48, 64, 96, 128, ...: few shapes to compile); the epoch's last batch is filled with
weight-0 rows, so every example counts exactly once per epoch. Everything is a pure function of
the seed.
Sharding. The train step is one `jax.jit` over a ("data", "fsdp") mesh: params and optimiser
state follow `sharding.param_sharding`, batches are split over all devices (`global_batch`), and
XLA inserts the collectives; results equal a single device's.
Metrics (all x 100, on dev). accuracy; f1 (binary tasks only; positive class = label id 1);
matthews (Matthews correlation, multi-class form as scikit-learn); regression: pearson, spearman
(0 when undefined, i.e. constant predictions) and mse (unscaled). The reported figures are the
last epoch's; `best` holds the epoch with the highest accuracy (spearman for regression).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from scipy import stats

from clowlab import optim, sharding
from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc
from clowlab.models import heads

HEAD_DROPOUT = 0.1
WARMUP_RATIO = 0.1
SORT_CHUNK = 32  # batches per length-sorted chunk of a shuffled epoch
LOG_SECONDS = 60.0  # progress lines at most this often
_BUCKETS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)


# ---------------------------------------------------------------------------------------------
# Metrics (predictions and gold labels as 1-D arrays)


def accuracy(pred, gold) -> float:
  return 100.0 * float(np.mean(np.asarray(pred) == np.asarray(gold)))


def f1_binary(pred, gold) -> float:
  """F1 of the positive class (label id 1); 0 when there is no positive prediction or gold."""
  pred, gold = np.asarray(pred) == 1, np.asarray(gold) == 1
  tp = int(np.sum(pred & gold))
  denom = 2 * tp + int(np.sum(pred & ~gold)) + int(np.sum(~pred & gold))
  return 100.0 * (2 * tp / denom if denom else 0.0)


def matthews(pred, gold, num_labels: int | None = None) -> float:
  """Matthews correlation (multi-class, Gorodkin's R_K as scikit-learn); 0 when undefined."""
  pred, gold = np.asarray(pred, np.int64), np.asarray(gold, np.int64)
  k = int(num_labels or max(pred.max(initial=0), gold.max(initial=0)) + 1)
  c_KK = np.zeros((k, k), np.float64)
  np.add.at(c_KK, (gold, pred), 1.0)
  t_K, p_K, n = c_KK.sum(1), c_KK.sum(0), c_KK.sum()
  cov_tp = np.trace(c_KK) * n - t_K @ p_K
  cov_pp, cov_tt = n * n - p_K @ p_K, n * n - t_K @ t_K
  return 100.0 * float(cov_tp / math.sqrt(cov_tt * cov_pp)) if cov_tt * cov_pp else 0.0


def pearson(pred, gold) -> float:
  pred, gold = np.asarray(pred, np.float64), np.asarray(gold, np.float64)
  if len(gold) < 2 or np.ptp(pred) == 0 or np.ptp(gold) == 0:
    return 0.0
  return 100.0 * float(stats.pearsonr(pred, gold).statistic)


def spearman(pred, gold) -> float:
  pred, gold = np.asarray(pred, np.float64), np.asarray(gold, np.float64)
  if len(gold) < 2 or np.ptp(pred) == 0 or np.ptp(gold) == 0:
    return 0.0
  return 100.0 * float(stats.spearmanr(pred, gold).statistic)


def classification_metrics(pred, gold, num_labels: int) -> dict[str, float]:
  out = {"accuracy": accuracy(pred, gold), "matthews": matthews(pred, gold, num_labels)}
  if num_labels == 2:
    out["f1"] = f1_binary(pred, gold)
  return out


def regression_metrics(pred, gold) -> dict[str, float]:
  pred, gold = np.asarray(pred, np.float64), np.asarray(gold, np.float64)
  return {"pearson": pearson(pred, gold), "spearman": spearman(pred, gold),
          "mse": float(np.mean(np.square(pred - gold)))}


# ---------------------------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class Examples:
  """One split: texts, labels (int64 ids or float32 scores) and where each row came from."""
  text_a: list[str]
  text_b: list[str] | None
  label: np.ndarray
  lines: list[int]
  path: str

  def __len__(self) -> int:
    return len(self.text_a)


@dataclasses.dataclass
class Task:
  train: Examples
  dev: Examples
  regression: bool
  label_names: list[str]  # id -> label text; [] for regression

  @property
  def num_outputs(self) -> int:
    return 1 if self.regression else len(self.label_names)


def _check_columns(columns: Sequence) -> tuple:
  columns = tuple(columns or ())
  if len(columns) not in (2, 3):
    raise ClowlabError(f"clowlab: finetune columns={columns!r} must be TEXT[,TEXT_B],LABEL "
                       "(2 or 3 header names or 0-based indices), e.g. "
                       "--columns=sentence1,sentence2,label or --columns=3,1 for CoLA.")
  return columns


def read_split(path: str, columns: Sequence) -> tuple[Examples, list[str]]:
  """(Examples whose `label` is a placeholder until `load_task` parses it, the raw labels)."""
  from clowlab.data import sources  # noqa: PLC0415
  columns = _check_columns(columns)
  rows, lines = sources.read_columns(path, columns)
  text_a = [r[0] for r in rows]
  text_b = [r[1] for r in rows] if len(columns) == 3 else None
  raw = [r[-1].strip() for r in rows]
  return Examples(text_a, text_b, np.zeros((len(rows),), np.int64), lines, str(path)), raw


def _number(s: str) -> float | None:
  try:
    x = float(s)
  except ValueError:
    return None
  return x if math.isfinite(x) else None


def _label_key(s: str, numeric: bool) -> str:
  """The label's name: integer-valued numbers as int text, so "1.0" and "1" are one label."""
  x = _number(s) if numeric else None
  return str(int(x)) if x is not None and x.is_integer() else s


def load_task(train: str, dev: str, columns: Sequence, *, regression: bool | None = None,
              max_train_examples: int = 0, seed: int = 0) -> Task:
  """Reads and labels both splits (see the module doc for how labels are read)."""
  columns = _check_columns(columns)
  tr, tr_raw = read_split(train, columns)
  dv, dv_raw = read_split(dev, columns)
  if max_train_examples and max_train_examples < len(tr):
    # A seeded subset in file order: the same N examples for the same seed.
    keep = np.sort(np.random.default_rng(seed).permutation(len(tr))[:max_train_examples])
    tr = Examples([tr.text_a[i] for i in keep],
                  None if tr.text_b is None else [tr.text_b[i] for i in keep],
                  tr.label[keep], [tr.lines[i] for i in keep], tr.path)
    tr_raw = [tr_raw[i] for i in keep]
  numbers = [_number(s) for s in tr_raw]
  numeric = all(x is not None for x in numbers)
  if regression is None:
    regression = numeric and any(not x.is_integer() for x in numbers)
  col = columns[-1]
  if regression:
    for ex, raw in ((tr, tr_raw), (dv, dv_raw)):
      vals = [_number(s) for s in raw]
      bad = next((i for i, x in enumerate(vals) if x is None), None)
      if bad is not None:
        raise ClowlabError(f"clowlab: {ex.path} line {ex.lines[bad]}: label {raw[bad]!r} in column "
                           f"{col!r} is not a number, but the task is a regression. Check "
                           "--columns (the label column comes last), or drop --regression.")
      ex.label = np.asarray(vals, np.float32)
    return Task(tr, dv, True, [])
  keys = [_label_key(s, numeric) for s in tr_raw]
  names = sorted(set(keys), key=(lambda s: (float(s), s)) if numeric else None)
  if len(names) < 2:
    raise ClowlabError(f"clowlab: {tr.path} has a single label ({names}) in column {col!r}; "
                       "classification needs at least two. Check --columns (the label column "
                       "comes last).")
  ids = {name: i for i, name in enumerate(names)}
  tr.label = np.asarray([ids[k] for k in keys], np.int64)
  dv_ids = []
  for s, line in zip(dv_raw, dv.lines):
    k = _label_key(s, numeric)
    if k not in ids:
      raise ClowlabError(f"clowlab: {dv.path} line {line}: label {s!r} in column {col!r} does not "
                         f"occur in the train file {tr.path} (its labels: {names}). Use dev and "
                         "train files with the same label set, or check --columns.")
    dv_ids.append(ids[k])
  dv.label = np.asarray(dv_ids, np.int64)
  return Task(tr, dv, False, names)


@dataclasses.dataclass
class Encoded:
  """A split tokenized once: ids padded to seq_len, true lengths, labels."""
  ids_NL: np.ndarray
  types_NL: np.ndarray
  length_N: np.ndarray
  label_N: np.ndarray

  def __len__(self) -> int:
    return len(self.length_N)


def encode_split(tokenizer, ex: Examples, seq_len: int, type_vocab_size: int = 2) -> Encoded:
  """[CLS] a [SEP] (b [SEP]) per example, truncated longest-first to seq_len tokens."""
  e = tokenizer.encode(ex.text_a, ex.text_b, max_len=seq_len)
  n = len(ex)
  ids = np.full((n, seq_len), tokenizer.pad_id, np.int32)
  types = np.zeros((n, seq_len), np.int32)
  length = np.zeros((n,), np.int32)
  for i, (row, t) in enumerate(zip(e["input_ids"], e["token_type_ids"])):
    ids[i, :len(row)], types[i, :len(row)], length[i] = row, t, len(row)
  # A model with one token type (RoBERTa) has no row for segment 1.
  np.minimum(types, type_vocab_size - 1, out=types)
  return Encoded(ids, types, length, ex.label)


def bucket(n: int, seq_len: int) -> int:
  """The padded length for a batch whose longest row has n tokens."""
  return min(next((b for b in _BUCKETS if b >= n), seq_len), seq_len)


def make_batch(data: Encoded, pos: np.ndarray, batch_size: int, seq_len: int,
               pad_id: int) -> dict[str, np.ndarray]:
  """Rows `pos` padded to their length bucket; filler rows (weight 0) up to batch_size."""
  L = bucket(int(data.length_N[pos].max(initial=1)), seq_len)
  n = len(pos)
  ids = np.full((batch_size, L), pad_id, np.int32)
  types = np.zeros((batch_size, L), np.int32)
  ids[:n], types[:n] = data.ids_NL[pos, :L], data.types_NL[pos, :L]
  mask = (np.arange(L)[None, :] < data.length_N[pos][:, None]).astype(np.int32)
  mask = np.concatenate([mask, np.zeros((batch_size - n, L), np.int32)])
  mask[n:, 0] = 1  # filler rows: one token so no row is all padding
  label = np.zeros((batch_size,), data.label_N.dtype)
  label[:n] = data.label_N[pos]
  weight = np.zeros((batch_size,), np.float32)
  weight[:n] = 1.0
  return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
          "label": label.astype(np.float32 if label.dtype.kind == "f" else np.int32),
          "weight": weight}


def train_order(length_N: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
  """Epoch `epoch`'s batches of row indices: a seeded shuffle, chunks of SORT_CHUNK batches
  sorted by length (little padding), the batches themselves shuffled again."""
  rng = np.random.default_rng([seed, epoch])
  perm = rng.permutation(len(length_N))
  chunk = batch_size * SORT_CHUNK
  batches = []
  for start in range(0, len(perm), chunk):
    part = perm[start:start + chunk]
    part = part[np.argsort(-length_N[part], kind="stable")]
    batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
  return [batches[i] for i in rng.permutation(len(batches))]


def steps_per_epoch(n: int, batch_size: int) -> int:
  return -(-n // batch_size)


# ---------------------------------------------------------------------------------------------
# Model and train step


def init_params(encoder_params, ecfg: enc.EncoderConfig, num_outputs: int,
                rng: jax.Array) -> dict:
  """{"encoder": encoder params (with a pooler), "head": a linear layer D -> num_outputs}."""
  k_pool, k_head = jax.random.split(rng)
  D, std = ecfg.hidden_size, ecfg.initializer_range
  encoder_params = dict(encoder_params)
  if "pooler" not in encoder_params:  # e.g. a RoBERTa checkpoint saved without one
    encoder_params["pooler"] = heads.init_projection(k_pool, (D, D), std)["layers"][0]
  return {"encoder": encoder_params, "head": heads.init_projection(k_head, (D, num_outputs), std)}


def logits(params, batch, rng, train: bool, ecfg: enc.EncoderConfig,
           dropout: float = HEAD_DROPOUT):
  """(B, num_outputs) float32: linear(dropout(tanh pooler([CLS])))."""
  r_enc, r_head = jax.random.split(rng)
  out = enc.encode(params["encoder"], batch["input_ids"], batch["attention_mask"],
                   batch["token_type_ids"], r_enc, train, cfg=ecfg)
  pooled_BD = enc.pooler(params["encoder"], out.cls_BD)
  pooled_BD = enc.dropout(pooled_BD, dropout, r_head, train)
  return heads.projection(params["head"], pooled_BD)


def loss_fn(params, batch, rng, ecfg: enc.EncoderConfig, regression: bool,
            dropout: float = HEAD_DROPOUT):
  """Mean cross-entropy (or squared error) over the rows of weight 1."""
  z_BC = logits(params, batch, rng, True, ecfg, dropout)
  if regression:
    l_B = jnp.square(z_BC[:, 0] - batch["label"])
  else:
    l_B = optax.softmax_cross_entropy_with_integer_labels(z_BC, batch["label"])
  w_B = batch["weight"]
  return jnp.sum(w_B * l_B) / jnp.maximum(jnp.sum(w_B), 1.0)


def optim_config(learning_rate: float, total_steps: int) -> ml_collections.ConfigDict:
  """config.optim for the GLUE recipe (the keys of configs/common.py's optim block)."""
  return ml_collections.ConfigDict({
      "lr": float(learning_rate), "warmup_steps": int(round(WARMUP_RATIO * total_steps)),
      "schedule": "linear", "end_lr_ratio": 0.0, "weight_decay": 0.01, "b1": 0.9, "b2": 0.999,
      "eps": 1e-6, "clip_norm": 1.0, "groups": {}})


def make_train_step(ecfg: enc.EncoderConfig, tx, regression: bool,
                    dropout: float = HEAD_DROPOUT) -> Callable:
  grad_fn = jax.value_and_grad(loss_fn)

  def train_step(state, batch):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    loss, grads = grad_fn(state["params"], batch, rng, ecfg, regression, dropout)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new_state = {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
                 "opt_state": opt_state, "rng": state["rng"]}
    return new_state, {"loss": loss, "grad_norm": optax.global_norm(grads)}

  return train_step


def init_state(params, tx, mesh, seed: int):
  """The sharded train state {step, params, opt_state, rng} and its shardings."""
  params = jax.device_put(params, sharding.param_sharding(params, mesh))

  def make(p):
    return {"step": jnp.zeros((), jnp.int32), "params": p, "opt_state": tx.init(p),
            "rng": jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 1))}

  s_shard = sharding.state_sharding(jax.eval_shape(make, params), mesh)
  return jax.jit(make, out_shardings=s_shard)(params), s_shard


def compile_train_step(ecfg, tx, regression: bool, mesh, s_shard,
                       dropout: float = HEAD_DROPOUT) -> Callable:
  """state, global batch -> state, metrics; jitted over the mesh, the state donated."""
  return jax.jit(make_train_step(ecfg, tx, regression, dropout),
                 in_shardings=(s_shard, sharding.batch_sharding(mesh)),
                 out_shardings=(s_shard, sharding.replicated(mesh)), donate_argnums=0)


def _local(batch: dict, mesh) -> dict:
  """This process's rows of a global numpy batch, as sharded global jax.Arrays."""
  pc, pi = jax.process_count(), jax.process_index()
  b = len(batch["weight"]) // pc
  return sharding.global_batch({k: v[pi * b:(pi + 1) * b] for k, v in batch.items()}, mesh)


def predict(predict_fn, params, data: Encoded, batch_size: int, seq_len: int, pad_id: int,
            mesh, regression: bool) -> np.ndarray:
  """Class ids (or scores) for every row of `data`, in its order."""
  order = np.argsort(-data.length_N, kind="stable")
  out = np.zeros((len(data),), np.float32 if regression else np.int64)
  for start in range(0, len(order), batch_size):
    pos = order[start:start + batch_size]
    z_BC = np.asarray(predict_fn(params, _local(make_batch(data, pos, batch_size, seq_len,
                                                           pad_id), mesh)))[:len(pos)]
    out[pos] = z_BC[:, 0] if regression else np.argmax(z_BC, -1)
  return out


# ---------------------------------------------------------------------------------------------
# The run


def run(model, train: str, dev: str, columns: Sequence, *, epochs: int = 3,
        learning_rate: float = 2e-5, batch_size: int = 32, seed: int = 0, seq_len: int = 128,
        max_train_examples: int = 0, regression: bool | None = None, mesh=None,
        dropout: float = HEAD_DROPOUT, verbose: bool = True) -> dict[str, Any]:
  """Finetunes `model` (a path, or a `loading.LoadedModel`) on train, scores dev; see the module
  doc. Returns the JSON-able results."""
  from clowlab.convert import loading  # noqa: PLC0415 - the harness loads its model (design.md, layers)
  t0 = time.perf_counter()
  if epochs < 1 or batch_size < 1 or learning_rate <= 0:
    raise ClowlabError(f"clowlab: finetune needs epochs >= 1, batch_size >= 1 and "
                       f"learning_rate > 0 (got {epochs}, {batch_size}, {learning_rate}).")
  # The data first: its errors are the common ones, and reading it is quicker than the model.
  task = load_task(train, dev, columns, regression=regression,
                   max_train_examples=max_train_examples, seed=seed)
  m = model if isinstance(model, loading.LoadedModel) else loading.load_model(model)
  mesh = mesh if mesh is not None else sharding.make_mesh()
  dp = sharding.data_parallel_size(mesh)
  if batch_size % dp:
    raise ClowlabError(f"clowlab: finetune batch_size={batch_size} is not divisible by the {dp} "
                       f"data-parallel devices of mesh {dict(mesh.shape)}. Use a multiple of {dp}.")
  # Unrolled layers: the faster train step on CPU (docs/results.md).
  ecfg = m.ecfg.replace(scan_layers=False)
  seq_len = min(seq_len, ecfg.max_position_embeddings - ecfg.position_offset)
  tok, pad = m.tokenizer, m.tokenizer.pad_id
  tr = encode_split(tok, task.train, seq_len, ecfg.type_vocab_size)
  dv = encode_split(tok, task.dev, seq_len, ecfg.type_vocab_size)

  per_epoch = steps_per_epoch(len(tr), batch_size)
  total = epochs * per_epoch
  params = init_params(m.params["encoder"], ecfg, task.num_outputs, jax.random.key(seed))
  tx, _ = optim.make_optimizer(optim_config(learning_rate, total), total, params)
  state, s_shard = init_state(params, tx, mesh, seed)
  step_fn = compile_train_step(ecfg, tx, task.regression, mesh, s_shard, dropout)
  predict_fn = jax.jit(lambda p, b: logits(p, b, jax.random.key(0), False, ecfg),
                       in_shardings=(s_shard["params"], sharding.batch_sharding(mesh)),
                       out_shardings=sharding.replicated(mesh))
  if verbose and jax.process_index() == 0:
    kind = "regression" if task.regression else f"{task.num_outputs}-way classification"
    print(f"clowlab: finetune {m.description} | {kind} | train {len(tr)} dev {len(dv)} | "
          f"{epochs} epochs x {per_epoch} steps of {batch_size} | mesh {dict(mesh.shape)}",
          flush=True)

  history, t_log = [], time.perf_counter()
  for epoch in range(epochs):
    t_epoch, losses = time.perf_counter(), []
    for pos in train_order(tr.length_N, batch_size, seed, epoch):
      state, out = step_fn(state, _local(make_batch(tr, pos, batch_size, seq_len, pad), mesh))
      losses.append(out["loss"])
      if verbose and jax.process_index() == 0 and time.perf_counter() - t_log > LOG_SECONDS:
        t_log = time.perf_counter()  # a sign of life on slow (CPU) runs
        print(f"clowlab: finetune step {epoch * per_epoch + len(losses)}/{total}, "
              f"loss={float(out['loss']):.4f}", flush=True)
    pred = predict(predict_fn, state["params"], dv, 2 * batch_size, seq_len, pad, mesh,
                   task.regression)
    scores = (regression_metrics(pred, dv.label_N) if task.regression else
              classification_metrics(pred, dv.label_N, task.num_outputs))
    row = {"epoch": epoch + 1, "train_loss": float(np.mean(jax.device_get(losses))), **scores,
           "seconds": round(time.perf_counter() - t_epoch, 2)}
    history.append(row)
    if verbose and jax.process_index() == 0:
      print("clowlab: finetune epoch " + ", ".join(
          f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
            flush=True)

  main_metric = "spearman" if task.regression else "accuracy"
  best = max(history, key=lambda r: r[main_metric])  # the earliest of equals
  last = {k: v for k, v in history[-1].items() if k not in ("epoch", "seconds")}
  out = {"model": m.description, "regression": task.regression, **last,
         "best": {k: v for k, v in best.items() if k != "seconds"}, "per_epoch": history,
         "train_examples": len(tr), "dev_examples": len(dv), "epochs": epochs,
         "steps": int(jax.device_get(state["step"])), "batch_size": batch_size,
         "learning_rate": learning_rate, "seq_len": seq_len, "seed": seed,
         "train": str(train), "dev": str(dev)}
  if not task.regression:
    out["num_labels"] = task.num_outputs
    out["label_map"] = {name: i for i, name in enumerate(task.label_names)}
  out["train_seconds"] = round(time.perf_counter() - t0, 2)
  return out
