"""GLUE-style finetuning: metrics vs scikit-learn/scipy, a tiny encoder learns, the CLI contract,
GLUE file parsing, user errors, and the sharded train step == one device."""
import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from scipy import stats

from clowlab import embed, optim, sharding
from clowlab.data import tokenizers
from clowlab.errors import ClowlabError
from clowlab.evaluators import finetune
from clowlab.models import encoder as enc

from conftest import REPO

FILLER = ("the a one some this that man woman dog cat car house tree red blue big small old new "
          "walks runs sees has likes near under over with").split()
KEYS = ("awful", "fine", "great")


def _synthetic(rng, n, key_words, pair):
  """Rows whose label is fixed by which key word (one of `key_words`) a sentence holds."""
  rows = []
  for _ in range(n):
    k = int(rng.integers(len(key_words)))
    words = list(rng.choice(FILLER, int(rng.integers(3, 9))))
    words.insert(int(rng.integers(len(words) + 1)), key_words[k])
    text = " ".join(words)
    rows.append((" ".join(rng.choice(FILLER, 4)), text, k) if pair else (text, k))
  return rows


def _write_tsv(path, header, rows):
  with open(path, "w", encoding="utf-8") as f:
    f.write("\t".join(header) + "\n")
    for r in rows:
      f.write("\t".join(map(str, r)) + "\n")
  return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A fresh 1-layer encoder with a WordPiece tokenizer over the test words (a small vocabulary
  keeps XLA:CPU compiles short), as an embed.LoadedModel."""
  d = tmp_path_factory.mktemp("tiny_tok")
  (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                           *FILLER, *KEYS]) + "\n")
  (d / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')
  tok = tokenizers.load_tokenizer(str(d))
  ecfg = enc.EncoderConfig(vocab_size=tok.vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                           intermediate_size=64, max_position_embeddings=64)
  rng = np.random.default_rng(0)

  def init(path, leaf):  # BERT's init in numpy: jitting init_params costs seconds of compile
    name = jax.tree_util.keystr(path)
    if name.endswith(("['scale']", "['bias']")):
      return (np.ones if name.endswith("['scale']") else np.zeros)(leaf.shape, np.float32)
    return (0.02 * np.clip(rng.standard_normal(leaf.shape), -2, 2)).astype(np.float32)

  params = jax.tree_util.tree_map_with_path(init, enc.param_shapes(ecfg))
  return embed.LoadedModel({"encoder": params}, ecfg, tok, {}, "tiny", d)


@pytest.fixture(scope="module")
def tiny_dirs(tiny, tmp_path_factory):
  """The tiny model as an HF directory and as a clowlab workdir."""
  from clowlab.convert import hf, workdir  # noqa: PLC0415
  root = tmp_path_factory.mktemp("tiny_model")
  hf.save_hf(root / "hf", tiny.params["encoder"], tiny.ecfg, tokenizer_dir=tiny.path)
  workdir.import_to_workdir(root / "hf", root / "work")
  return root / "hf", root / "work"


# ---------------------------------------------------------------------------------------------
# (1) metrics


def test_metrics_match_sklearn_and_scipy():
  skm = pytest.importorskip("sklearn.metrics")  # a parity fixture (.ci/run installs it)
  rng = np.random.default_rng(0)
  for k in (2, 3, 5):
    gold, pred = rng.integers(k, size=200), rng.integers(k, size=200)
    pred[:80] = gold[:80]  # correlated, not perfect
    m = finetune.classification_metrics(pred, gold, k)
    np.testing.assert_allclose(m["accuracy"], 100 * skm.accuracy_score(gold, pred))
    np.testing.assert_allclose(m["matthews"], 100 * skm.matthews_corrcoef(gold, pred))
    if k == 2:
      np.testing.assert_allclose(m["f1"], 100 * skm.f1_score(gold, pred))
    else:
      assert "f1" not in m
  gold = rng.normal(size=300)
  pred = gold + rng.normal(size=300)
  r = finetune.regression_metrics(pred, gold)
  np.testing.assert_allclose(r["pearson"], 100 * stats.pearsonr(pred, gold).statistic)
  np.testing.assert_allclose(r["spearman"], 100 * stats.spearmanr(pred, gold).statistic)
  np.testing.assert_allclose(r["mse"], np.mean((pred - gold) ** 2))
  # Undefined cases are 0, not NaN (the JSON line stays valid).
  assert finetune.matthews(np.ones(5, int), np.array([0, 1, 0, 1, 1])) == 0.0
  assert finetune.f1_binary(np.zeros(4, int), np.zeros(4, int)) == 0.0
  assert finetune.pearson(np.ones(4), np.arange(4.0)) == 0.0


# ---------------------------------------------------------------------------------------------
# (2), (3) a tiny encoder learns; the command line


def test_tiny_hf_dir_learns_regression_through_run_cli(tiny_dirs, tmp_path):
  from clowlab import evaluate  # noqa: PLC0415
  rng = np.random.default_rng(2)
  # Scores 0, 1.5, 3: non-integer, so regression is detected without --regression.
  rows = [(t, 1.5 * k) for t, k in _synthetic(rng, 420, KEYS, pair=False)]
  train = _write_tsv(tmp_path / "train.tsv", ("text", "score"), rows[:360])
  dev = _write_tsv(tmp_path / "dev.tsv", ("text", "score"), rows[360:])
  r = evaluate.run_cli("classification", str(tiny_dirs[0]), train=train, dev=dev,
                       columns="text,score", epochs=4, learning_rate=3e-3, batch_size=24,
                       seq_len=16)
  assert r["regression"] and "label_map" not in r and "accuracy" not in r
  assert "HF bert" in r["model"] and {"seconds", "mse"} <= set(r)
  assert r["pearson"] > 80 and r["spearman"] > 70, r
  json.dumps(r)


def test_cli_on_a_workdir_learns_pair_classification(tiny_dirs, tmp_path):
  rng = np.random.default_rng(1)
  labels = ("neg", "pos")  # string labels; the key word is in the second text
  rows = [(a, b, labels[k]) for a, b, k in _synthetic(rng, 448, ("awful", "great"), pair=True)]
  train = _write_tsv(tmp_path / "train.tsv", ("s1", "s2", "label"), rows[:384])
  dev = _write_tsv(tmp_path / "dev.tsv", ("s1", "s2", "label"), rows[384:])
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "JAX_PLATFORMS": "cpu"}
  p = subprocess.run([sys.executable, "-m", "clowlab.evaluate", "--task=classification",
                      f"--model={tiny_dirs[1]}", f"--train={train}", f"--dev={dev}",
                      "--columns=s1,s2,label", "--epochs=4", "--batch_size=32", "--seq_len=16",
                      "--learning_rate=3e-3"],
                     capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
  assert p.returncode == 0, p.stderr[-3000:]
  r = json.loads(p.stdout.strip().splitlines()[-1])
  for k in ("accuracy", "f1", "matthews", "train_examples", "dev_examples", "epochs", "steps",
            "seconds", "label_map", "best", "per_epoch"):
    assert k in r, k
  assert r["task"] == "classification" and "clowlab checkpoint" in r["model"]
  assert "'data': 1, 'fsdp': 2" in p.stdout  # both devices
  assert (r["train_examples"], r["dev_examples"], r["epochs"], r["steps"]) == (384, 64, 4, 48)
  assert r["label_map"] == {"neg": 0, "pos": 1}
  assert r["accuracy"] > 85, r
  assert r["per_epoch"][-1]["train_loss"] < r["per_epoch"][0]["train_loss"]
  assert r["best"]["accuracy"] >= r["accuracy"]


# ---------------------------------------------------------------------------------------------
# (4) GLUE files


@pytest.mark.parametrize("name,columns,n_train,n_dev,labels", [
    ("SST-2", ("sentence", "label"), 67349, 872, ["0", "1"]),
    ("CoLA", (3, 1), 8551, 1043, ["0", "1"]),  # no header: 4 columns by index
    ("RTE", ("sentence1", "sentence2", "label"), 2490, 277, ["entailment", "not_entailment"]),
    ("STS-B", ("sentence1", "sentence2", "score"), 5749, 1500, []),
])
def test_glue_files_parse(shared_data, name, columns, n_train, n_dev, labels):
  d = shared_data / "glue" / name
  task = finetune.load_task(str(d / "train.tsv"), str(d / "dev.tsv"), columns)
  assert (len(task.train), len(task.dev)) == (n_train, n_dev)
  assert task.label_names == labels and task.regression == (not labels)
  assert (task.train.text_b is None) == (len(columns) == 2)
  if labels:
    assert set(np.unique(task.train.label)) == {0, 1} and task.dev.label.dtype == np.int64
  else:
    assert task.train.label.dtype == np.float32
    assert task.train.label.min() == 0 and task.train.label.max() == 5
  if name == "CoLA":  # first row of train.tsv: gj04 1 <empty> Our friends won't ...
    assert task.train.text_a[0].startswith("Our friends won't") and task.train.label[0] == 1
  if name == "RTE":  # bare quotes stay in the text
    assert any(t.startswith('Valero Energy Corp., on Monday, said it found "extensive"')
               for t in task.train.text_a)
  sub = finetune.load_task(str(d / "train.tsv"), str(d / "dev.tsv"), columns,
                           max_train_examples=100, seed=3)
  assert len(sub.train) == 100
  again = finetune.load_task(str(d / "train.tsv"), str(d / "dev.tsv"), columns,
                             max_train_examples=100, seed=3)
  assert sub.train.text_a == again.train.text_a


# ---------------------------------------------------------------------------------------------
# (5) errors


def test_user_errors_name_the_file_or_column(tmp_path):
  train = _write_tsv(tmp_path / "train.tsv", ("text", "label"), [("a b", "x"), ("c d", "y")])
  dev = _write_tsv(tmp_path / "dev.tsv", ("text", "label"), [("a b", "x"), ("c", "z")])
  with pytest.raises(ClowlabError, match="missing.tsv"):
    finetune.load_task(str(tmp_path / "missing.tsv"), dev, ("text", "label"))
  with pytest.raises(ClowlabError, match="no column 'sentence'"):
    finetune.load_task(train, dev, ("sentence", "label"))
  with pytest.raises(ClowlabError, match=r"dev.tsv line 3: label 'z'.*train.tsv"):
    finetune.load_task(train, dev, ("text", "label"))
  with pytest.raises(ClowlabError, match="TEXT"):
    finetune.load_task(train, dev, ("label",))
  with pytest.raises(ClowlabError, match="not a number"):
    finetune.load_task(train, dev, ("text", "label"), regression=True)
  one = _write_tsv(tmp_path / "one.tsv", ("text", "label"), [("a", 1), ("b", 1)])
  with pytest.raises(ClowlabError, match="single label"):
    finetune.load_task(one, one, ("text", "label"))
  from clowlab import evaluate  # noqa: PLC0415
  with pytest.raises(ClowlabError, match="--columns"):
    evaluate.run_cli("classification", "any", train=train, dev=dev)
  with pytest.raises(ClowlabError, match="--train"):
    evaluate.run_cli("classification", "any", dev=dev, columns="text,label")
  with pytest.raises(ClowlabError, match="model nowhere does not exist"):
    evaluate.run_cli("classification", "nowhere", train=train, dev=train, columns="text,label")


def test_numeric_labels_sort_numerically(tmp_path):
  rows = [("t", v) for v in ("10", "2", "1.0", "2")]
  f = _write_tsv(tmp_path / "t.tsv", ("text", "label"), rows)
  task = finetune.load_task(f, f, ("text", "label"))
  assert task.label_names == ["1", "2", "10"] and list(task.train.label) == [2, 1, 0, 1]


# ---------------------------------------------------------------------------------------------
# (6) sharded == one device


def test_sharded_train_step_equals_single_device(tiny):
  rng = np.random.default_rng(4)
  texts = [" ".join(rng.choice(FILLER, int(rng.integers(2, 12)))) for _ in range(16)]
  ex = finetune.Examples(texts, None, rng.integers(2, size=16), list(range(16)), "mem")
  data = finetune.encode_split(tiny.tokenizer, ex, 32)
  batch = finetune.make_batch(data, np.arange(13), 16, 32, tiny.tokenizer.pad_id)  # 3 filler rows
  ecfg = tiny.ecfg.replace(scan_layers=False)
  params = finetune.init_params(tiny.params["encoder"], ecfg, 2, jax.random.key(0))
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = sharding.make_mesh({"data": 2 if len(devices) > 1 else 1, "fsdp": -1}, devices)
    tx, _ = optim.make_optimizer(finetune.optim_config(1e-3, 10), 10, params)
    state, s_shard = finetune.init_state(params, tx, mesh, seed=0)
    step = finetune.compile_train_step(ecfg, tx, False, mesh, s_shard)
    state, out = step(state, sharding.global_batch(batch, mesh))
    state, out2 = step(state, sharding.global_batch(batch, mesh))  # dropout key of step 1
    if len(devices) > 1:
      leaf = state["params"]["encoder"]["layers"]["mlp"]["wi"]["kernel"]
      assert len(leaf.sharding.device_set) == 8
    results.append(jax.device_get((state["params"], out["loss"], out2["loss"])))
  chex.assert_trees_all_close(results[0], results[1], rtol=1e-5, atol=1e-6)
