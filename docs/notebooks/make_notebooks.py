"""Writes the Colab demo notebooks in this folder from the cell sources below.

    python docs/notebooks/make_notebooks.py           # (re)write every *.ipynb here
    python docs/notebooks/make_notebooks.py --check   # exit 1 if a committed notebook differs

Edit the notebooks here, not in Jupyter: the .ipynb files are generated, committed without
outputs, and tests/test_notebooks.py fails when they differ from this script's output (and
executes each one headless with CLOWLAB_NOTEBOOK_SMOKE=1, the smallest settings).
"""
from __future__ import annotations

import copy
import json
import pathlib
import sys
import textwrap

import nbformat

HERE = pathlib.Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------------
# Cells every notebook shares.

INSTALL = '''\
# Where to get clowlab when this runtime does not have it (e.g. a fresh Colab). The repository
# has no public URL yet, so set ONE of:
#   - a git URL you can clone, e.g. "https://github.com/<owner>/clowlab.git";
#   - a zip of the repository uploaded to Colab (Files pane), e.g. "/content/clowlab.zip";
#   - the path of a checkout on this machine.
# Not needed where `import clowlab` already works (`pip install -e .` in a checkout).
CLOWLAB_SOURCE = ""

import glob
import importlib.util
import os
import pathlib
import subprocess
import sys


def installed_repo():
  """The checkout of an installed clowlab (the run configs live in its configs/, not in the
  package), found without importing it: jax must not start before a TPU jax is installed."""
  spec = importlib.util.find_spec("clowlab")
  if spec is None or not spec.origin:
    return None
  root = pathlib.Path(spec.origin).resolve().parents[1]
  return root if (root / "configs").is_dir() else None


def on_tpu_vm():
  """A Colab (or Cloud) TPU runtime: TPU chips are device files, or Colab names the TPU."""
  return bool(os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_ACCELERATOR_TYPE")
              or glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def pip(*args):
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)


REPO = installed_repo()
if REPO is None:
  src = CLOWLAB_SOURCE or os.environ.get("CLOWLAB_SOURCE", "")
  if not src:
    raise RuntimeError("clowlab is not installed here: set CLOWLAB_SOURCE at the top of this cell "
                       "(a git URL, an uploaded zip of the repository or a checkout path).")
  if src.endswith(".zip"):
    import zipfile
    dest = pathlib.Path.home() / "clowlab_src"
    zipfile.ZipFile(src).extractall(dest)
    REPO = next((p.parent for p in sorted(dest.glob("**/setup.py"))
                 if (p.parent / "configs").is_dir()), None)
    if REPO is None:
      raise RuntimeError(f"{src} holds no clowlab repository (setup.py next to configs/).")
  elif "://" in src or src.startswith("git@"):
    REPO = pathlib.Path.home() / "clowlab"
    if not REPO.is_dir():
      subprocess.run(["git", "clone", "--depth", "1", src, str(REPO)], check=True)
  else:
    REPO = pathlib.Path(src).resolve()
  pip("-e", str(REPO))
  if on_tpu_vm():
    # clowlab pins jax[cpu]; the TPU runtime needs the matching libtpu (same jax version).
    jax_version = subprocess.run(
        [sys.executable, "-c", "import importlib.metadata as m; print(m.version('jax'))"],
        check=True, capture_output=True, text=True).stdout.strip()
    pip(f"jax[tpu]=={jax_version}")
  importlib.invalidate_caches()
# This process predates the editable install; configs/ is imported from the checkout.
sys.path[:0] = [p for p in (str(REPO),) if p not in sys.path]
print("clowlab checkout:", REPO)'''

DEVICES = '''\
import jax

BACKEND, N_DEV = jax.default_backend(), jax.device_count()
print(f"jax {jax.__version__}, backend {BACKEND!r}, {N_DEV} device(s):", jax.devices())
if on_tpu_vm() and BACKEND != "tpu":
  print("warning: this is a TPU runtime but jax does not see the TPU (another process may hold "
        "it: Runtime > Restart session); everything below runs on the CPU.")'''

HELPERS = '''\
%matplotlib inline
import csv
import importlib
import io
import json
import shutil

import matplotlib.pyplot as plt
import numpy as np
from absl import logging as absl_logging
from IPython.display import Image, Markdown, display

from clowlab import report, train

absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's notes on read-only checkpoint dirs

NOTEBOOK = "NOTEBOOK_NAME"
# CLOWLAB_NOTEBOOK_SMOKE=1 (set by tests/test_notebooks.py): the smallest settings, seconds per
# run, numbers meaningless. Otherwise the configs' runlocal sizes.
SMOKE = os.environ.get("CLOWLAB_NOTEBOOK_SMOKE") == "1"
LOG_EVERY = 1 if SMOKE else 10  # steps between metrics rows (the plotted curves)
DEMO = REPO / "clowlab" / "demo_data"
# Workdirs (git-ignored runs/); emptied first, so every execution trains from scratch (a workdir
# holding a finished run would only be resumed, one with other settings refused).
RUNS = (pathlib.Path(os.environ.get("CLOWLAB_NOTEBOOK_RUNS") or REPO / "runs" / "notebooks")
        / NOTEBOOK / ("smoke" if SMOKE else "full"))
shutil.rmtree(RUNS, ignore_errors=True)
(RUNS / "data").mkdir(parents=True)


def per_devices(batch):
  """A global batch splits evenly over the devices (8 on a TPU v2-8 / v3-8, 1 on a v5e-1 or a
  CPU): the nearest multiple of the device count, at least one row per device."""
  return max(N_DEV, round(batch / N_DEV) * N_DEV)


def run(config, workdir, overrides):
  """What `python -m clowlab.main --config=configs/<config> --workdir=<workdir>
  --config.<key>=<value> ...` does, in this process (which already holds the TPU)."""
  path, _, variant = config.partition(":")
  cfg = importlib.import_module("configs." + path.removesuffix(".py")).get_config(variant or None)
  cfg.update_from_flattened_dict(overrides)
  print(f"python -m clowlab.main --config=configs/{config} --workdir={workdir}, overrides:",
        ", ".join(f"{k}={v!r}" for k, v in overrides.items() if not isinstance(v, (list, tuple))))
  train.train(cfg, str(workdir))
  losses = report.read_run(workdir)["train"].get("loss", [])
  shown = losses[::max(len(losses) // 5, 1)][:5] + losses[-1:]
  print("training loss:", ", ".join(f"step {s} {v:.3f}" for s, v in shown))


def write_csv(path, header, rows):
  with open(path, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)
  return path


def read_table(path, delimiter=","):
  with open(path, newline="", encoding="utf-8") as f:
    # TSVs are read without quote processing, as clowlab reads them (sentences contain bare ").
    quoting = csv.QUOTE_NONE if delimiter == "\\t" else csv.QUOTE_MINIMAL
    return list(csv.DictReader(f, delimiter=delimiter, quoting=quoting))


def show(fig):
  """Displays a figure as a PNG (whatever matplotlib backend clowlab.report left selected)."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
  plt.close(fig)
  display(Image(data=buf.getvalue()))


def show_report(workdirs, names, metrics=None):
  """`python -m clowlab.report WORKDIR ... --names ... [--metrics ...]`: the comparison table and
  its plots (metrics: only evaluation metrics containing one of these strings)."""
  out = RUNS / "report"
  md = report.report([str(w) for w in workdirs], str(out), names=names, metrics=metrics)
  display(Markdown(md))
  for png in ("loss.png", "eval.png"):
    if (out / png).exists():
      display(Image(filename=str(out / png)))


def metric_series(workdir, prefix, split="train"):
  """{metric: [(step, value)]} of one run's metrics.jsonl, keys starting with prefix."""
  return {k: v for k, v in report.read_run(workdir)[split].items() if k.startswith(prefix)}'''

COLAB_NOTE = """\
**Running it.** In Colab: *File > Upload notebook* (or open it from GitHub once the repository is
public), then *Runtime > Change runtime type > TPU* (v2-8 has 8 cores, v5e-1 one chip; any
runtime works, without a TPU everything runs on the CPU). Set `CLOWLAB_SOURCE` in the first code
cell, then *Runtime > Run all*. Locally: `pip install -e ".[test]"` in the repository and open it
in Jupyter; the first cell finds the checkout. The runs are the configs' `runlocal` variants:
tiny encoders trained from scratch on the demo data in `clowlab/demo_data`, minutes on a 2-core
CPU and far less on a TPU. They show the machinery working end to end, not the quality of the
methods at scale (docs/results.md has real runs)."""


def md(text):
  return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text, tags=()):
  cell = nbformat.v4.new_code_cell(textwrap.dedent(text).strip("\n"))
  if tags:
    cell.metadata["tags"] = list(tags)
  return cell


def common(name):
  return [code(INSTALL), code(DEVICES), code(HELPERS.replace("NOTEBOOK_NAME", name))]


# --------------------------------------------------------------------------------------------
# Sentence embeddings: SimCSE, layer-wise attention pooling, BERT-flow.

SENTENCE = [
    md("""
    # Sentence embeddings with clowlab: SimCSE, layer-wise attention pooling, BERT-flow

    This notebook trains three sentence encoders on the same demo data and compares them:

    1. **SimCSE** (`configs/simcse.py:runlocal`): unsupervised contrastive learning where a
       sentence and its own second dropout pass are the positive pair; the `[CLS]` vector is the
       embedding.
    2. **Layer-wise attention pooling** (`configs/layer_attention.py:runlocal`): the same
       contrastive objective, but the sentence vector also attends over every layer's output
       (each layer's CLS queries the layers' mean token vectors), concatenated with the last
       `[CLS]` and passed through an MLP, in training and at evaluation.
    3. **BERT-flow** (`configs/bert_flow.py:runlocal` with `init_from` = the SimCSE workdir): the
       SimCSE encoder frozen, a Glow-style normalizing flow fitted by maximum likelihood on its
       sentence vectors to make them isotropic; the run also fits BERT-whitening, the closed-form
       baseline, on the same sentences.

    Then: STS evaluation (`clowlab.evaluate`, Spearman x 100 on the demo STS-B pairs), a small
    semantic search with `clowlab.embed.load`, and the training/evaluation curves from
    `clowlab.report`. Method notes: `docs/methods/simcse.md`, `layer_attention.md`,
    `bert_flow.md`.
    """),
    md(COLAB_NOTE),
    *common("sentence_embeddings"),
    md("""
    ## Settings

    `CLOWLAB_NOTEBOOK_SMOKE=1` (the tests) picks the smallest sizes; otherwise the runlocal
    sizes (300 steps each, the full 500-pair demo STS set). Batch sizes are rounded to a multiple
    of the device count.
    """),
    code("""
    if SMOKE:
      STEPS, FLOW_STEPS, LAYERS, STS_PAIRS, WARMUP, BATCH, FLOW_BATCH = 10, 10, 1, 64, 3, 16, 32
    else:  # the runlocal sizes
      STEPS, FLOW_STEPS, LAYERS, STS_PAIRS, WARMUP, BATCH, FLOW_BATCH = 300, 300, 2, 500, 30, 32, 64
    BATCH, FLOW_BATCH = per_devices(BATCH), per_devices(FLOW_BATCH)
    EVAL_EVERY = 0 if SMOKE else 100  # 0: only after the last step

    # STS-B dev pairs (scores 0-5): evaluated during training and below.
    sts_rows = read_table(DEMO / "sts_en_dev.csv")[:STS_PAIRS]
    STS_FILE = write_csv(RUNS / "data" / "sts_en.csv", ["sentence1", "sentence2", "score"],
                         [(r["sentence1"], r["sentence2"], r["score"]) for r in sts_rows])
    STS_EVAL = [{"name": "sts_en", "path": str(STS_FILE),
                 "columns": ["sentence1", "sentence2", "score"]}]
    WD = {"SimCSE": RUNS / "simcse", "layer attention": RUNS / "layer_attention",
          "SimCSE + BERT-flow": RUNS / "bert_flow"}
    print(f"{STEPS} steps at batch {BATCH}, {LAYERS} layer(s); {len(sts_rows)} STS pairs; "
          f"workdirs under {RUNS}")
    """),
    md("""
    ## 1. SimCSE

    A fresh 128-wide encoder with a sentencepiece vocabulary trained on the demo text first
    (`tokenizer: spm:2000`). The loss starts near ln(batch) and falls as the model learns to
    pick each sentence's own dropout twin among the batch.
    """),
    code("""
    COMMON = {"total_steps": STEPS, "batch_size": BATCH, "eval_every": EVAL_EVERY,
              "checkpoint_every": STEPS, "log_every": LOG_EVERY, "progress_bar": False,
              "model.num_layers": LAYERS, "optim.warmup_steps": WARMUP, "eval.sts": STS_EVAL}
    run("simcse.py:runlocal", WD["SimCSE"], COMMON)
    """),
    md("""
    ## 2. Layer-wise attention pooling

    Same data, steps and encoder size; only the pooler differs.
    """),
    code("""
    run("layer_attention.py:runlocal", WD["layer attention"], COMMON)
    """),
    md("""
    ## 3. BERT-flow on the SimCSE encoder

    `init_from` takes an HF directory or a clowlab workdir: here the SimCSE run. The encoder and
    its tokenizer come from there (`tokenizer=""`, and `model={}` since an imported architecture
    cannot be changed); only the flow trains, on cached sentence vectors (first-last-layer
    average) of the demo text and the STS sentences (no scores). Its evaluation prints the raw
    vectors, whitening and the flow side by side.
    """),
    code("""
    flow = {"init_from": str(WD["SimCSE"]), "tokenizer": "", "model": {},
            "total_steps": FLOW_STEPS, "batch_size": FLOW_BATCH, "checkpoint_every": FLOW_STEPS,
            "log_every": LOG_EVERY, "progress_bar": False, "eval.sts": STS_EVAL}
    if SMOKE:  # the STS sentences only, and a 2-level x 1-step flow: fewer programs to compile
      flow.update({"data.train": [], "flow.levels": 2, "flow.depth": 1})
    run("bert_flow.py:runlocal", WD["SimCSE + BERT-flow"], flow)
    """),
    md("""
    ## STS evaluation

    `python -m clowlab.evaluate --task=sts --model=WORKDIR --data=FILE
    --columns=sentence1,sentence2,score` (here its Python form, `evaluate.run_cli`): Spearman
    correlation x 100 between the cosine of the two sentence vectors and the gold score. Each
    workdir embeds the way its method does (SimCSE: `[CLS]`; layer attention: its pooler; the
    BERT-flow workdir: the flow's latent). The flow run's own evaluation also scored the raw
    first-last average and whitening of the same frozen encoder. These are 2-layer encoders
    trained from scratch on a few hundred lines for minutes: their order says little about the
    methods (docs/results.md compares them on a pretrained encoder).
    """),
    code("""
    from clowlab import evaluate

    spearman = {}
    for name, wd in WD.items():
      r = evaluate.run_cli("sts", str(wd), data=str(STS_FILE), columns="sentence1,sentence2,score")
      spearman[name] = r["spearman"]
      print(f"{name:20s} Spearman x100 = {r['spearman']:6.2f}   [{r['model']}]")
    flow_eval = {k: v[-1][1] for k, v in report.read_run(WD["SimCSE + BERT-flow"])["eval"].items()}
    for key in sorted(flow_eval):
      if key.count("/") == 1 and key.endswith("/spearman") and key != "flow/spearman":
        print(f"  BERT-flow run's evaluation, {key}: {flow_eval[key]:.2f}")

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(list(spearman), list(spearman.values()), color=["C0", "C1", "C2"])
    ax.set(xlabel="STS Spearman x 100 (demo STS-B dev pairs)", title=f"{STEPS} training steps")
    ax.invert_yaxis()
    show(fig)
    """),
    md("""
    ## Semantic search

    `clowlab.embed.load(workdir)` returns a function from texts to vectors (numpy, one row per
    text); here with the model that scored best on STS. The corpus is every second sentence of
    the STS pairs; each query is a first sentence whose pair scored at least 4 (a paraphrase), so
    its partner should come out on top. `clowlab.evaluators.retrieval.search` is exact cosine
    top-k, sharded over the devices.
    """),
    code("""
    from clowlab import embed
    from clowlab.evaluators import retrieval

    BEST = max(spearman, key=spearman.get)
    emb = embed.load(WD[BEST])
    print(f"{BEST}: {emb.description}")
    corpus = sorted({r["sentence2"] for r in sts_rows})
    pairs = [(r["sentence1"], r["sentence2"]) for r in sts_rows if float(r["score"]) >= 4]
    ids, scores = retrieval.search(emb([q for q, _ in pairs]), emb(corpus), k=3)
    for (q, gold), row, sc in list(zip(pairs, ids, scores))[:3]:
      print(f"\\nquery: {q}\\n  gold: {gold}")
      for i, s in zip(row, sc):
        print(f"  {s:.3f}  {corpus[i]}")
    SEARCH_TOP1 = 100 * float(np.mean([corpus[row[0]] == g for (_, g), row in zip(pairs, ids)]))
    print(f"\\ngold partner ranked first for {SEARCH_TOP1:.1f}% of {len(pairs)} queries "
          f"(corpus of {len(corpus)} sentences)")
    """),
    md("""
    ## Training curves

    `python -m clowlab.report WORKDIR ... --names ...` reads each run's `metrics.jsonl`: a
    table (last step, final loss, tokens/s, last and best evaluation) and PNG plots.
    """),
    code("""
    show_report(list(WD.values()), list(WD), metrics=["sts_en/spearman"])
    """),
    code("""
    SUMMARY = {"notebook": NOTEBOOK, "smoke": SMOKE, "backend": BACKEND, "devices": N_DEV,
               "steps": STEPS, "sts_spearman": spearman, "search_model": BEST,
               "search_top1": SEARCH_TOP1}
    print(json.dumps(SUMMARY, indent=1))
    """, tags=["summary"]),
]

# --------------------------------------------------------------------------------------------
# COCO-LM: pretraining, then finetuning evaluation.

COCO = [
    md("""
    # COCO-LM pretraining and finetuning evaluation with clowlab

    **COCO-LM** (`configs/coco_lm.py:runlocal`): a small generator (masked LM) corrupts the
    input; the main model learns to correct it (**CLM**: copy-or-predict each original token,
    plus replaced-token detection as in ELECTRA) and to contrast each corrupted sequence with a
    cropped view of its original (**SCL**, a sequence-level InfoNCE). The notebook pretrains it
    next to the masked-LM baseline (`configs/mlm.py:runlocal`, same size, data and steps), plots
    the loss terms, then judges both encoders the GLUE way:
    `python -m clowlab.evaluate --task=classification` finetunes each with a head on a labelled
    train file and scores a dev file after every epoch (docs/finetune.md). The task is STS-B as
    GLUE runs it, on the demo STS-B pairs: regression of the 0-5 similarity score of a sentence
    pair, judged by Spearman correlation. Method notes: `docs/methods/coco_lm.md`.
    """),
    md(COLAB_NOTE),
    *common("coco_lm"),
    md("""
    ## Settings
    """),
    code("""
    if SMOKE:  # finetuning pairs cut to 16 tokens: one padded length, one program to compile
      STEPS, LAYERS, WARMUP, BATCH, SEQ, FT_EPOCHS, FT_TRAIN, FT_SEQ = 10, 1, 3, 16, 32, 1, 64, 16
    else:  # the runlocal sizes; finetuning on all 400 train pairs
      STEPS, LAYERS, WARMUP, BATCH, SEQ, FT_EPOCHS, FT_TRAIN, FT_SEQ = 300, 2, 30, 32, 64, 5, 400, 64
    BATCH, FT_BATCH = per_devices(BATCH), per_devices(32)
    FT_LR = 1e-4  # GLUE's 2e-5 barely moves a small encoder in a few dozen steps

    # STS-B-style regression on the demo pairs: the first FT_TRAIN train, the last 100 dev.
    rows = read_table(DEMO / "sts_en_dev.csv")
    FT_FILES = {split: write_csv(RUNS / "data" / f"{split}.csv",
                                 ["sentence1", "sentence2", "score"],
                                 [(r["sentence1"], r["sentence2"], r["score"]) for r in part])
                for split, part in (("train", rows[:FT_TRAIN]), ("dev", rows[400:]))}
    print(f"finetuning: {FT_TRAIN} train / 100 dev pairs, scores 0-5")
    WD = {"COCO-LM": RUNS / "coco_lm", "MLM": RUNS / "mlm"}
    """),
    md("""
    ## Pretraining

    Both start from scratch with a sentencepiece vocabulary trained on the demo text. The
    COCO-LM loss is a weighted sum (generator MLM + 50 x binary + CLM + SCL), so its total is
    not comparable with the MLM loss; the terms are plotted below.
    """),
    code("""
    COMMON = {"total_steps": STEPS, "batch_size": BATCH, "checkpoint_every": STEPS,
              "log_every": LOG_EVERY, "progress_bar": False, "model.num_layers": LAYERS,
              "optim.warmup_steps": WARMUP, "seq_len": SEQ}
    run("coco_lm.py:runlocal", WD["COCO-LM"], COMMON)
    # The baseline's held-out MLM loss is evaluated after the last step only.
    run("mlm.py:runlocal", WD["MLM"], {**COMMON, "eval_every": 0})
    """),
    code("""
    terms = metric_series(WD["COCO-LM"], "")
    names = [k for k in terms if k.endswith("_loss") or k in ("binary_accuracy", "scl_accuracy")]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
    for ax, k in zip(axes[0], names):
      s, v = zip(*terms[k])
      ax.plot(s, v)
      ax.set(title=k, xlabel="step")
      ax.grid(alpha=0.3)
    fig.suptitle("COCO-LM loss terms and accuracies")
    show(fig)
    """),
    md("""
    ## Finetuning evaluation

    `python -m clowlab.evaluate --task=classification --model=WORKDIR --train=train.csv
    --dev=dev.csv --columns=sentence1,sentence2,score --learning_rate=1e-4`: the pair is fed as
    `[CLS] a [SEP] b [SEP]`, BERT's pooler and a one-output head are trained with the encoder
    (squared error, AdamW, linear decay; the fractional scores make it a regression), the dev set
    is scored after every epoch. A constant prediction scores 0; with 400 examples and encoders
    pretrained for minutes expect small correlations that move from run to run (docs/results.md
    has the MLM / ELECTRA / COCO-LM comparison at a larger budget).
    """),
    code("""
    from clowlab import evaluate

    finetuned = {}
    for name, wd in WD.items():
      r = evaluate.run_cli("classification", str(wd), train=str(FT_FILES["train"]),
                           dev=str(FT_FILES["dev"]), columns="sentence1,sentence2,score",
                           epochs=FT_EPOCHS, learning_rate=FT_LR, batch_size=FT_BATCH,
                           seq_len=FT_SEQ)
      finetuned[name] = r
      print(f"{name:8s} dev Spearman x100 {r['spearman']:6.2f}, Pearson {r['pearson']:6.2f}, "
            f"MSE {r['mse']:.2f} ({r['steps']} steps, {r['train_seconds']:.0f} s)")

    fig, ax = plt.subplots(figsize=(5, 3))
    for name, r in finetuned.items():
      ax.plot([e["epoch"] for e in r["per_epoch"]], [e["spearman"] for e in r["per_epoch"]],
              marker="o", label=name)
    ax.axhline(0, color="gray", ls="--", label="constant prediction")
    ax.set(xlabel="finetuning epoch", ylabel="dev Spearman x 100", title="STS-B-style regression")
    ax.legend()
    ax.grid(alpha=0.3)
    show(fig)
    """),
    md("""
    ## Training curves (`clowlab.report`)
    """),
    code("""
    show_report(list(WD.values()), list(WD))
    """),
    code("""
    SUMMARY = {"notebook": NOTEBOOK, "smoke": SMOKE, "backend": BACKEND, "devices": N_DEV,
               "steps": STEPS, "coco_loss_terms": names,
               "dev_spearman": {k: r["spearman"] for k, r in finetuned.items()},
               "regression": all(r["regression"] for r in finetuned.values())}
    print(json.dumps(SUMMARY, indent=1))
    """, tags=["summary"]),
]

# --------------------------------------------------------------------------------------------
# InfoXLM: cross-lingual pretraining and retrieval.

INFOXLM = [
    md("""
    # InfoXLM cross-lingual pretraining and retrieval with clowlab

    **InfoXLM** (`configs/infoxlm.py:runlocal`) trains one encoder for several languages with
    three terms: multilingual masked LM on monolingual text (MMLM), translation LM on
    concatenated translation pairs (TLM), and cross-lingual contrast (XLCo): a sentence and its
    translation are a positive pair against a queue of other sentences encoded by a momentum
    encoder. Here on the demo English, German and Chinese text and translation pairs.

    Evaluation is sentence retrieval across languages (Tatoeba style, `python -m
    clowlab.evaluate --task=retrieval`): embed each held-out English sentence and find its German
    translation among all held-out German sentences by cosine, both directions. The held-out
    pairs and the STS-B sentences of the run's own evaluation are removed from training
    (`data.exclude`). A bag-of-embeddings baseline (mean of the input embeddings, `layer=0`) shows
    what the layers add. Method notes: `docs/methods/infoxlm.md`.
    """),
    md(COLAB_NOTE),
    *common("infoxlm"),
    md("""
    ## Settings
    """),
    code("""
    if SMOKE:
      STEPS, LAYERS, WARMUP, BATCH, HELD_OUT, STS_PAIRS = 10, 1, 3, 8, 64, 64
    else:  # the runlocal sizes, 300 steps instead of 120
      STEPS, LAYERS, WARMUP, BATCH, HELD_OUT, STS_PAIRS = 300, 2, 20, 16, 200, 500
    BATCH = PAIR_BATCH = per_devices(BATCH)
    QUEUE = 16 * PAIR_BATCH  # whole contrastive batches

    # Held out: the last HELD_OUT en-de pairs, deduplicated on both sides so each query has
    # exactly one right answer.
    pairs, seen_en, seen_de = [], set(), set()
    for r in reversed(read_table(DEMO / "parallel_en_de.tsv", delimiter="\\t")):
      if r["en"] not in seen_en and r["de"] not in seen_de and len(pairs) < HELD_OUT:
        pairs.append((r["en"], r["de"]))
        seen_en.add(r["en"])
        seen_de.add(r["de"])
    HELD = {lang: RUNS / "data" / f"held_out.{lang}" for lang in ("en", "de")}
    for i, lang in enumerate(("en", "de")):
      HELD[lang].write_text("".join(p[i] + "\\n" for p in pairs), encoding="utf-8")
    # The run's own evaluation: en-zh retrieval and cross-lingual STS on STS-B dev rows.
    sts = {lang: read_table(DEMO / f"sts_{lang}_dev.csv")[:STS_PAIRS] for lang in ("en", "zh")}
    STS = {lang: write_csv(RUNS / "data" / f"sts_{lang}.csv", ["sentence1", "sentence2", "score"],
                           [(r["sentence1"], r["sentence2"], r["score"]) for r in sts[lang]])
           for lang in ("en", "zh")}
    EXCLUDE = [str(HELD["en"]), str(HELD["de"])] + [f"{STS[l]}#{c}" for l in STS
                                                     for c in ("sentence1", "sentence2")]
    WD = RUNS / "infoxlm"
    print(f"{len(pairs)} held-out en-de pairs; {STEPS} steps at batch {BATCH} + {PAIR_BATCH} pairs")
    """),
    md("""
    ## Pretraining
    """),
    code("""
    run("infoxlm.py:runlocal", WD, {
        "total_steps": STEPS, "batch_size": BATCH, "infoxlm.parallel_batch_size": PAIR_BATCH,
        "infoxlm.queue_size": QUEUE, "checkpoint_every": STEPS, "log_every": LOG_EVERY,
        "progress_bar": False, "model.num_layers": LAYERS, "optim.warmup_steps": WARMUP,
        "data.exclude": EXCLUDE,
        "eval.bitext": [f"zh-en:{STS['zh']}|{STS['en']}#sentence1"],
        "eval.xsts": [f"en-zh:{STS['en']}|{STS['zh']}"]})
    """),
    md("""
    The three loss terms, and XLCo's mean cosine of each sentence with its translation (the
    positive) and with the other keys (the negatives). InfoXLM starts from a pretrained
    multilingual encoder (XLM-R); from scratch at this size the `[CLS]` vectors XLCo contrasts
    can stay nearly identical for every sentence (positive and negative cosines on top of each
    other, `xlco_accuracy` at one row per batch). `configs/infoxlm.py:small` therefore continues
    from an MMLM + TLM checkpoint (`small_start`); `--config.infoxlm.xlco_pooling=mean`
    contrasts mean-pooled vectors instead.
    """),
    code("""
    terms = metric_series(WD, "")
    names = [k for k in ("mmlm_loss", "tlm_loss", "xlco_loss", "xlco_accuracy") if k in terms]
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.2 * (len(names) + 1), 2.8))
    for ax, k in zip(axes, names):
      s, v = zip(*terms[k])
      ax.plot(s, v)
      ax.set(title=k, xlabel="step")
    for k, label in (("xlco_pos_sim", "translation"), ("xlco_neg_sim", "other sentences")):
      s, v = zip(*terms[k])
      axes[-1].plot(s, v, label=label)
    axes[-1].set(title="XLCo cosine", xlabel="step")
    axes[-1].legend(fontsize=8)
    for ax in axes:
      ax.grid(alpha=0.3)
    fig.suptitle("InfoXLM loss terms")
    show(fig)
    """),
    md("""
    ## Cross-lingual retrieval on held-out pairs

    `python -m clowlab.evaluate --task=retrieval --model=WORKDIR --source=held_out.en
    --target=held_out.de [--layer=0]`: accuracy (%) of the nearest neighbour, en->de and de->en.
    By default the model embeds as the method evaluates (mean of the XLCo layer).
    """),
    code("""
    from clowlab import evaluate

    retrieval = {}
    for name, layer in (("InfoXLM", None), ("input embeddings (layer 0)", 0)):
      r = evaluate.run_cli("retrieval", str(WD), source=str(HELD["en"]), target=str(HELD["de"]),
                           layer=layer)
      retrieval[name] = {"en->de": r["acc_source_to_target"], "de->en": r["acc_target_to_source"]}
      print(f"{name:28s} en->de {r['acc_source_to_target']:5.1f}%  de->en "
            f"{r['acc_target_to_source']:5.1f}%   [{r['model']}]")
    own = {k: v[-1][1] for k, v in report.read_run(WD)["eval"].items()}
    print("the run's own evaluation (zh-en retrieval %, en-zh STS Spearman x100):",
          {k: round(v, 2) for k, v in own.items() if k.startswith(("bitext", "xsts"))})

    fig, ax = plt.subplots(figsize=(6, 3))
    width = 0.38
    for i, (name, accs) in enumerate(retrieval.items()):
      ax.bar(np.arange(2) + (i - 0.5) * width, list(accs.values()), width, label=name)
    ax.set_xticks(range(2), ["en->de", "de->en"])
    ax.set(ylabel="top-1 accuracy (%)",
           title=f"{len(pairs)} held-out pairs (chance {100 / len(pairs):.1f}%)")
    ax.legend(fontsize=8)
    show(fig)
    """),
    md("""
    Cosine similarities between a few held-out English sentences and their German translations
    (`clowlab.embed.load`): a bright diagonal means translations land next to each other.
    """),
    code("""
    from clowlab import embed

    emb = embed.load(WD)
    k = 8
    en = emb([p[0] for p in pairs[:k]])
    de = emb([p[1] for p in pairs[:k]])
    en /= np.linalg.norm(en, axis=1, keepdims=True)
    de /= np.linalg.norm(de, axis=1, keepdims=True)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(en @ de.T, cmap="viridis")
    ax.set(xlabel="German translation #", ylabel="English sentence #", title="cosine similarity")
    fig.colorbar(im)
    show(fig)
    """),
    md("""
    ## Training curves (`clowlab.report`)
    """),
    code("""
    show_report([WD], ["InfoXLM"])
    """),
    code("""
    SUMMARY = {"notebook": NOTEBOOK, "smoke": SMOKE, "backend": BACKEND, "devices": N_DEV,
               "steps": STEPS, "held_out_pairs": len(pairs), "retrieval": retrieval,
               "loss_terms": names}
    print(json.dumps(SUMMARY, indent=1))
    """, tags=["summary"]),
]

# --------------------------------------------------------------------------------------------
# CLOWER: Chinese word-character contrast, export to a plain HF char BERT.

CLOWER = [
    md("""
    # CLOWER: Chinese word-character contrastive pretraining with clowlab

    **CLOWER** (`configs/clower.py:runlocal`) pretrains a *character*-level Chinese encoder with
    character MLM plus a word-character contrast: for words found by jieba in the input pipeline,
    the sentence's states at a whole-word-masked word's character positions must pick out that
    word, encoded on its own, from the other words of the batch. The model stays a
    plain character BERT, so it exports to a Hugging Face checkpoint that `transformers` loads
    with no custom code.

    The notebook trains it on the demo Chinese sentences (those of the STS pairs removed), scores
    Chinese STS-B pairs (`clowlab.evaluate`, against a bag-of-characters baseline), exports with
    `python -m clowlab.convert export`, loads the export with `transformers` and checks that it
    embeds like clowlab. Method notes: `docs/methods/clower.md`.
    """),
    md(COLAB_NOTE),
    *common("clower"),
    md("""
    ## Settings
    """),
    code("""
    if SMOKE:
      STEPS, LAYERS, WARMUP, BATCH, STS_PAIRS = 10, 1, 3, 16, 64
    else:  # the runlocal sizes
      STEPS, LAYERS, WARMUP, BATCH, STS_PAIRS = 300, 2, 30, 32, 500
    BATCH = per_devices(BATCH)
    EVAL_EVERY = 0 if SMOKE else 100

    sts_rows = read_table(DEMO / "sts_zh_dev.csv")[:STS_PAIRS]
    STS_FILE = write_csv(RUNS / "data" / "sts_zh.csv", ["sentence1", "sentence2", "score"],
                         [(r["sentence1"], r["sentence2"], r["score"]) for r in sts_rows])
    WD, HF_DIR = RUNS / "clower", RUNS / "clower_hf"
    print(f"{STEPS} steps at batch {BATCH}; {len(sts_rows)} STS pairs; sample: {sts_rows[0]}")
    """),
    md("""
    ## Pretraining

    A character vocabulary is counted on the training text first (`tokenizer: chars:3000`);
    the demo sentences that occur in the STS pairs are excluded (`data.exclude`), so the
    evaluation never scores memorised text.
    """),
    code("""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading notes
    run("clower.py:runlocal", WD, {
        "total_steps": STEPS, "batch_size": BATCH, "eval_every": EVAL_EVERY,
        "checkpoint_every": STEPS, "log_every": LOG_EVERY, "progress_bar": False,
        "model.num_layers": LAYERS, "optim.warmup_steps": WARMUP,
        "data.exclude": tuple(f"{DEMO / 'sts_zh_dev.csv'}#{c}" for c in ("sentence1", "sentence2")),
        "eval.sts": [{"name": "sts_zh_demo", "path": str(STS_FILE),
                      "columns": ["sentence1", "sentence2", "score"]}]})
    terms = metric_series(WD, "")
    names = [k for k in terms if k.endswith(("_loss", "_accuracy"))]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
    for ax, k in zip(axes[0], names):
      s, v = zip(*terms[k])
      ax.plot(s, v)
      ax.set(title=k, xlabel="step")
      ax.grid(alpha=0.3)
    fig.suptitle("CLOWER loss terms")
    show(fig)
    """),
    md("""
    ## Chinese STS

    `python -m clowlab.evaluate --task=sts --model=WORKDIR --data=sts_zh.csv` (mean pooling of
    the last layer, the method's default), and with `--layer=0`: the mean of the input character
    embeddings, a bag-of-characters baseline. Characters two sentences share already say much
    about their similarity, and a 2-layer model trained for minutes from scratch need not beat
    that; `configs/clower.py:small` (docs/results.md) compares CLOWER with char-MLM at a larger
    size.
    """),
    code("""
    from clowlab import evaluate

    spearman = {}
    for name, layer in (("CLOWER", None), ("character embeddings (layer 0)", 0)):
      r = evaluate.run_cli("sts", str(WD), data=str(STS_FILE), columns="sentence1,sentence2,score",
                           layer=layer)
      spearman[name] = r["spearman"]
      print(f"{name:32s} Spearman x100 = {r['spearman']:6.2f}   [{r['model']}]")
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.barh(list(spearman), list(spearman.values()), color=["C0", "C7"])
    ax.set(xlabel="STS Spearman x 100 (demo Chinese STS-B pairs)")
    ax.invert_yaxis()
    show(fig)
    """),
    md("""
    ## Export to a Hugging Face character BERT

    `python -m clowlab.convert export` writes `config.json`, `model.safetensors` and the
    tokenizer files of the latest checkpoint. It runs as a separate process here, on the CPU
    (`JAX_PLATFORMS=cpu`), because this notebook's process holds the TPU.
    """),
    code("""
    out = subprocess.run([sys.executable, "-m", "clowlab.convert", "export", f"--workdir={WD}",
                          f"--out={HF_DIR}"], capture_output=True, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    print(out.stdout[-2000:], out.stderr[-2000:] if out.returncode else "")
    out.check_returncode()
    print(sorted(p.name for p in HF_DIR.iterdir()))
    """),
    md("""
    Load it with plain `transformers` (PyTorch), embed a few sentences by mean pooling, and
    compare with `clowlab.embed.load` on the same directory (same pooling).
    """),
    code("""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from clowlab import embed

    tok = AutoTokenizer.from_pretrained(HF_DIR)
    hf_model = AutoModel.from_pretrained(HF_DIR).eval()
    texts = [r["sentence1"] for r in sts_rows[:4]]
    print(type(hf_model).__name__, type(tok).__name__, tok.tokenize(texts[0])[:12])
    with torch.no_grad():
      batch = tok(texts, padding=True, return_tensors="pt")
      hidden = hf_model(**batch).last_hidden_state
      mask = batch["attention_mask"].unsqueeze(-1).float()
      hf_vecs = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    ours = embed.load(HF_DIR, pooling="mean")(texts)
    MAX_DIFF = float(np.abs(hf_vecs - ours).max())
    print(f"transformers vs clowlab.embed, mean pooling: max |difference| = {MAX_DIFF:.2e}")
    assert MAX_DIFF < 1e-3, MAX_DIFF
    """),
    md("""
    ## Training curves (`clowlab.report`)
    """),
    code("""
    show_report([WD], ["CLOWER"], metrics=["sts_zh_demo/"])
    """),
    code("""
    SUMMARY = {"notebook": NOTEBOOK, "smoke": SMOKE, "backend": BACKEND, "devices": N_DEV,
               "steps": STEPS, "sts_spearman": spearman, "hf_model": type(hf_model).__name__,
               "hf_max_diff": MAX_DIFF, "loss_terms": names}
    print(json.dumps(SUMMARY, indent=1))
    """, tags=["summary"]),
]

NOTEBOOKS = {"sentence_embeddings": SENTENCE, "coco_lm": COCO, "infoxlm": INFOXLM,
             "clower": CLOWER}


def build(name: str) -> nbformat.NotebookNode:
  nb = nbformat.v4.new_notebook()
  nb.cells = copy.deepcopy(NOTEBOOKS[name])  # executing a built notebook must not touch these
  for i, cell in enumerate(nb.cells):
    cell.id = f"{name}-{i:02d}"  # stable ids: regenerating changes nothing
  nb.metadata = {
      "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
      "language_info": {"name": "python"},
      "accelerator": "TPU",  # Colab offers a TPU runtime when it opens the notebook
      "colab": {"provenance": [], "toc_visible": True},
  }
  nbformat.validate(nb)
  return nb


def render(name: str) -> str:
  return nbformat.writes(build(name)) + "\n"


def is_current(name: str) -> bool:
  """The committed notebook holds what build() makes (compared as JSON, so another nbformat
  version's whitespace or key order is not a difference)."""
  path = HERE / f"{name}.ipynb"
  return path.exists() and json.loads(path.read_text(encoding="utf-8")) == json.loads(render(name))


def main(argv: list[str]) -> int:
  check = "--check" in argv
  stale = []
  for name in NOTEBOOKS:
    path = HERE / f"{name}.ipynb"
    if check:
      if not is_current(name):
        stale.append(path.name)
    else:
      path.write_text(render(name), encoding="utf-8")
      print("wrote", path)
  if stale:
    print("stale (run python docs/notebooks/make_notebooks.py):", ", ".join(stale))
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
