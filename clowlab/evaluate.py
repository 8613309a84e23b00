"""Evaluation of a workdir's checkpoint (config.mode=eval) and during training.

The evaluators are chosen by config (config.evals, else the method's own entries; see
evaluators/registry.py); results go to metrics.jsonl with split "eval" and are printed.
"""
from __future__ import annotations

import os

import jax

from clowlab import (checkpoint, config_check, metrics as metrics_lib, methods, paths, sharding,
                     train, workdir as workdir_lib)
from clowlab.data import tokenizers
from clowlab.errors import ClowlabError
from clowlab.evaluators import registry
from clowlab.models import encoder as enc


def evaluate_workdir(cfg, workdir: str, step: int | None = None) -> dict[str, float]:
  """Evaluates the latest (or given) checkpoint of workdir with cfg's evaluator and data."""
  config_check.check(cfg)
  method = methods.get(cfg.method)
  mesh = sharding.mesh_from_config(cfg)
  with checkpoint.Manager(workdir, read_only=True, max_to_keep=None) as m:
    if m.latest_step() is None:
      raise ClowlabError(f"clowlab: no checkpoint in {checkpoint.checkpoint_dir(workdir)} to "
                         "evaluate. Train first (--config.mode=train_and_eval).")
    # The meta of the step restored (an unreadable latest one falls back to the one before).
    r = m.restore(step)
  meta = r["meta"]
  if "encoder_config" not in meta:
    raise ClowlabError(f"clowlab: checkpoint step {r['step']} in "
                       f"{checkpoint.checkpoint_dir(workdir)} holds no encoder config. Point "
                       "--workdir at a clowlab training run or `clowlab.convert import` workdir.")
  ecfg = enc.EncoderConfig.from_dict(meta["encoder_config"])
  params = jax.device_put(r["params"], sharding.param_sharding(r["params"], mesh))
  # A remote workdir (gs://...): the tokenizer is read from a local copy, the cache is local.
  tokenizer = tokenizers.load_tokenizer(
      workdir_lib.local_tokenizer_dir(workdir, meta.get("tokenizer") or
                                      workdir_lib.TOKENIZER_SUBDIR, jax.process_index()))
  cache_dir = cfg.get("cache_dir", "") or paths.default_cache_dir(workdir)
  results = registry.evaluate(train.eval_context(method, params, ecfg, cfg, tokenizer, cache_dir,
                                                 mesh))
  writer = metrics_lib.Writer(workdir)
  writer.write(r["step"], results, split="eval")
  writer.close()
  if jax.process_index() == 0:
    print(f"clowlab: eval at step {r['step']}: " +
          ", ".join(f"{k}={v:.4f}" for k, v in results.items()), flush=True)
  return results


# ---------------------------------------------------------------------------------------------
# Command line:
#   python -m clowlab.evaluate --task=sts --model=M --data=FILE[,FILE...] \
#       --columns=sentence1,sentence2,score [--pooling=mean|cls|...]
#   python -m clowlab.evaluate --task=retrieval --model=M --source=FILE --target=FILE
#   python -m clowlab.evaluate --task=search --model=M --queries=F --corpus=F --qrels=F
#   python -m clowlab.evaluate --task=tatoeba --model=M --data=DIR [--languages=cmn,deu] \
#       [--pooling=mean|cls --layer=K]
#   python -m clowlab.evaluate --task=xsts --model=M --data=DIR [--pairs=en-zh,en-de] \
#       [--split=test] [--pooling=mean|cls --layer=K]
#   python -m clowlab.evaluate --task=classification --model=M --train=F --dev=F \
#       --columns=TEXT_A[,TEXT_B],LABEL [--epochs=3 --learning_rate=2e-5 --batch_size=32 \
#       --seed=0 --seq_len=128 --max_train_examples=N --regression]   (docs/finetune.md)
# M is an HF model directory or a clowlab workdir. The last line printed is one JSON object.

TASKS = ("sts", "retrieval", "search", "classification", "tatoeba", "xsts")


def _columns(spec: str | None):
  if not spec:
    return None
  cols = [c.strip() for c in spec.split(",")]
  return tuple(int(c) if c.isdigit() else c for c in cols)


def run_cli(task: str, model: str, *, pooling: str | None = None, data: str = "",
            columns: str | None = None, source: str = "", target: str = "", queries: str = "",
            corpus: str = "", qrels: str = "", seq_len: int = 128, batch_size: int | None = None,
            cache_dir: str | None = None, train: str = "", dev: str = "", epochs: int = 3,
            learning_rate: float = 2e-5, seed: int = 0, max_train_examples: int = 0,
            regression: bool | None = None, layer: int | None = None, languages: str = "",
            pairs: str = "", split: str = "test") -> dict:
  """What `python -m clowlab.evaluate` runs; returns the JSON-able results.

  batch_size: sentences per forward pass (default 64), or per train step for classification
  (default 32).
  layer: embed with this layer's mean or raw CLS vector (pooling mean | cls; 0 = embeddings,
  -1 = last) instead of the default pooler.
  """
  import time  # noqa: PLC0415

  from clowlab import embed  # noqa: PLC0415
  from clowlab.evaluators import retrieval  # noqa: PLC0415
  if task not in TASKS:
    raise ClowlabError(f"clowlab: unknown --task={task!r}; valid: {', '.join(TASKS)}.")
  t0 = time.perf_counter()
  if task == "classification":
    from clowlab.evaluators import finetune  # noqa: PLC0415
    if layer is not None:
      raise ClowlabError("clowlab: --layer does not apply to --task=classification (it finetunes "
                         "BERT's pooler over [CLS]); drop --layer.")
    if not train or not dev:
      raise ClowlabError("clowlab: --task=classification needs --train=FILE and --dev=FILE.")
    if not columns:
      raise ClowlabError("clowlab: --task=classification needs --columns=TEXT_A[,TEXT_B],LABEL "
                         "(header names or 0-based indices), e.g. --columns=sentence,label.")
    out = {"task": task}
    out.update(finetune.run(model, train, dev, _columns(columns), epochs=epochs,
                            learning_rate=learning_rate, batch_size=batch_size or 32, seed=seed,
                            seq_len=seq_len, max_train_examples=max_train_examples,
                            regression=regression))
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
  if task in ("tatoeba", "xsts") and not data:
    raise ClowlabError(f"clowlab: --task={task} needs --data=DIR (the folder of the "
                       + ("tatoeba.<xxx>-eng.* files)." if task == "tatoeba"
                          else "stsb-<lang>-<split>.csv files)."))
  emb = embed.load(model, pooling, layer=layer, seq_len=seq_len, batch_size=batch_size or 64)
  out: dict = {"task": task, "model": emb.description}
  # The registry's evaluators, with the model's embedder (its method's, or --pooling/--layer).
  ctx = registry.EvalContext(method=None, params=None, ecfg=None, cfg=None,
                             tokenizer=emb.tokenizer, cache_dir=cache_dir,
                             embed_override=emb)
  if task == "sts":
    files = [f for f in data.split(",") if f]
    if not files:
      raise ClowlabError("clowlab: --task=sts needs --data=FILE[,FILE...].")
    cols = _columns(columns)
    out.update(registry.get("sts")(
        {"sets": [{"name": os.path.splitext(os.path.basename(f))[0], "path": f,
                   "columns": list(cols) if cols else None} for f in files], "counts": True},
        ctx))
  elif task == "tatoeba":
    out.update(registry.get("tatoeba")({"dir": data, "languages": languages or None}, ctx))
  elif task == "xsts":
    out.update(registry.get("xsts")({"dir": data, "pairs": pairs or None, "split": split}, ctx))
  elif task == "retrieval":
    if not source or not target:
      raise ClowlabError("clowlab: --task=retrieval needs --source=FILE and --target=FILE "
                         "(line-aligned).")
    out.update(retrieval.evaluate_aligned(emb, retrieval.read_lines(source),
                                          retrieval.read_lines(target)))
  else:
    if not (queries and corpus and qrels):
      raise ClowlabError("clowlab: --task=search needs --queries, --corpus (id<TAB>text) and "
                         "--qrels (query_id<TAB>corpus_id).")
    out.update(retrieval.evaluate_search(emb, retrieval.read_id_text(queries),
                                         retrieval.read_id_text(corpus),
                                         retrieval.read_qrels(qrels)))
  out["seconds"] = round(time.perf_counter() - t0, 2)
  return out


def main(argv):
  import json  # noqa: PLC0415
  import sys  # noqa: PLC0415

  from absl import flags  # noqa: PLC0415
  del argv
  F = flags.FLAGS
  try:
    res = run_cli(F.task, F.model, pooling=F.pooling, data=F.data, columns=F.columns,
                  source=F.source, target=F.target, queries=F.queries, corpus=F.corpus,
                  qrels=F.qrels, seq_len=F.seq_len, batch_size=F.batch_size,
                  cache_dir=F.cache_dir, train=F.train, dev=F.dev, epochs=F.epochs,
                  learning_rate=F.learning_rate, seed=F.seed,
                  max_train_examples=F.max_train_examples, regression=F.regression,
                  layer=F.layer, languages=F.languages, pairs=F.pairs, split=F.split)
  except ClowlabError as e:
    print(e, file=sys.stderr)
    sys.exit(2)
  for k, v in res.items():
    if k not in ("task", "model", "learning_rate") and isinstance(v, float):
      print(f"{k}: {v:.2f}")
  print(json.dumps(res, sort_keys=True))


def _define_flags():
  from absl import flags  # noqa: PLC0415
  flags.DEFINE_enum("task", "sts", list(TASKS), "What to evaluate.")
  flags.DEFINE_string("model", None, "HF model directory or clowlab workdir.", required=True)
  flags.DEFINE_string("pooling", None, "cls | cls_before_pooler | mean | first_last_avg | "
                      "last_two_avg; default: the trained method's, else mean.")
  flags.DEFINE_string("data", "", "sts: comma-separated pair files (CSV/TSV/JSONL). tatoeba: the "
                      "folder of tatoeba.<xxx>-eng.<xxx|eng> files. xsts: the folder of "
                      "stsb-<lang>-<split>.csv files (stsb_multi_mt).")
  flags.DEFINE_string("columns", None, "sts: first,second,score column names or 0-based indices "
                      "(indices mean a headerless file); default: guessed from the header. "
                      "classification: TEXT_A[,TEXT_B],LABEL (required).")
  flags.DEFINE_string("source", "", "retrieval: source-language file, one sentence per line.")
  flags.DEFINE_string("target", "", "retrieval: line-aligned target file.")
  flags.DEFINE_string("queries", "", "search: id<TAB>text file of queries.")
  flags.DEFINE_string("corpus", "", "search: id<TAB>text file of documents.")
  flags.DEFINE_string("qrels", "", "search: query_id<TAB>corpus_id[<TAB>score] file.")
  flags.DEFINE_integer("layer", None, "Embed with one layer instead of the default pooler: 0 = "
                       "embeddings, -1 = last; --pooling=mean (default) or cls (its raw CLS "
                       "vector).")
  flags.DEFINE_string("languages", "", "tatoeba: comma-separated languages, e.g. cmn,deu "
                      "(default: every tatoeba.<xxx>-eng.<xxx> in --data).")
  flags.DEFINE_string("pairs", "", "xsts: comma-separated pairs a-b (sentence 1 in a, sentence 2 "
                      "in b), e.g. en-zh,en-de (default: en-<xx> for every other language).")
  flags.DEFINE_string("split", "test", "xsts: which stsb-<lang>-<split>.csv files (train | dev | "
                      "test).")
  flags.DEFINE_integer("seq_len", 128, "Maximum tokens per sentence.")
  flags.DEFINE_integer("batch_size", None, "Sentences per forward pass (default 64); "
                       "classification: examples per train step (default 32).")
  flags.DEFINE_string("train", "", "classification: labelled train file (CSV/TSV/JSONL).")
  flags.DEFINE_string("dev", "", "classification: labelled dev file, scored after each epoch.")
  flags.DEFINE_integer("epochs", 3, "classification: passes over the train file.")
  flags.DEFINE_float("learning_rate", 2e-5, "classification: peak AdamW learning rate (10% "
                     "warmup, then linear decay to 0).")
  flags.DEFINE_integer("seed", 0, "classification: seed of the head, dropout, shuffling and "
                       "--max_train_examples subset.")
  flags.DEFINE_integer("max_train_examples", 0, "classification: train on a seeded subset of "
                       "this many examples (0 = all).")
  flags.DEFINE_bool("regression", None, "classification: a regression (MSE) task; default: "
                    "when every train label is a number and one is not an integer.")
  flags.DEFINE_string("cache_dir", None, "Where parsed data files are cached (default: "
                      "~/.cache/clowlab).")


if __name__ == "__main__":
  from absl import app  # noqa: PLC0415
  _define_flags()
  app.run(main)
