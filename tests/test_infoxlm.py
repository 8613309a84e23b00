"""InfoXLM: language sampling, parallel sources and test-sentence removal, TLM masking and
positions, the momentum encoder (EMA, no gradients), the key queue across 8 devices (fill, FIFO
order, sharded == single device), bitwise resume with the queue, XLM-R import, the pod config's
CPU message."""
import gzip
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from clowlab import checkpoint, methods, sharding, train
from clowlab.convert import hf
from clowlab.data import multilingual
from clowlab.errors import ClowlabError
from clowlab.losses import queue as queue_lib
from clowlab.methods import infoxlm
from clowlab.models import encoder as enc
from configs import infoxlm as infoxlm_config

from tiny import override
from tiny import workdir_with_tokenizer as _workdir


def _cfg(**kw):
  c = infoxlm_config.get_config("runlocal")
  c.total_steps, c.batch_size, c.seq_len = 6, 16, 32
  c.checkpoint_every, c.log_every, c.eval_every = 3, 1, 0
  c.mode, c.progress_bar, c.async_checkpoint = "train", False, False
  c.tokenizer = "spm:2500"
  c.model.hidden_size, c.model.num_layers, c.model.num_heads = 32, 2, 2
  c.model.intermediate_size, c.model.max_position_embeddings = 64, 32
  c.infoxlm.update({"parallel_batch_size": 16, "queue_size": 64, "xlco_layer": 1,
                    "momentum": 0.9})
  c.eval = {}
  c.optim.warmup_steps = 2
  c.mesh = {"data": 2, "fsdp": 4}
  return override(c, **kw)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("tok")
  cfg = _cfg(cache_dir=str(d / "cache"))
  train.resolve_tokenizer(cfg, str(d), lambda: infoxlm.tokenizer_text(cfg, str(d / "cache")))
  return d / "tokenizer"


def _data(cfg, tok_dir, tmp_path, ecfg=None):
  from clowlab.data import tokenizers  # noqa: PLC0415
  tok = tokenizers.load_tokenizer(str(tok_dir))
  ctx = methods.DataContext(tokenizer=tok, process_index=0, process_count=1,
                            cache_dir=str(tmp_path / "cache"), encoder_config=ecfg or
                            enc.EncoderConfig(vocab_size=tok.vocab_size, type_vocab_size=2))
  return tok, infoxlm.make_data(cfg, ctx)


# ---------------------------------------------------------------------------------------------
# Data


def test_language_sampling_follows_the_exponent():
  counts = {"en": 90_000, "de": 9_000, "sw": 1_000}
  q = multilingual.sampling_probs(counts, 0.7)
  p = {k: v / 100_000 for k, v in counts.items()}
  z = sum(v ** 0.7 for v in p.values())
  for k in counts:
    assert q[k] == pytest.approx(p[k] ** 0.7 / z)
  assert q["sw"] > p["sw"] and q["en"] < p["en"]  # low-resource languages upsampled
  idx = multilingual.balanced_indices(counts, 0.7, seed=0)
  for k in counts:
    assert len(idx[k]) == round(q[k] * 100_000)
    assert idx[k].min() >= 0 and idx[k].max() < counts[k]
  # No repetition before every row was used once; the upsampled language repeats its rows.
  assert len(np.unique(idx["en"])) == len(idx["en"])
  assert len(np.unique(idx["sw"])) == 1_000
  assert multilingual.sampling_probs(counts, 1.0)["en"] == pytest.approx(0.9)
  with pytest.raises(ClowlabError, match="alpha"):
    multilingual.sampling_probs(counts, 0.0)


def test_parallel_sources_and_excluded_sentences(tmp_path):
  (tmp_path / "a.en").write_text("Hello there.\nSecret test line.\nGood night.\n")
  (tmp_path / "a.de").write_text("Hallo.\nGeheim.\nGute Nacht.\n")
  (tmp_path / "bi.txt").write_text("I run.\t我跑。\nSecret test line.\t秘密。\n")
  (tmp_path / "t_en.csv").write_text("One.,Two.,1.0\nThree.,Four.,2.0\n")
  (tmp_path / "t_zh.csv").write_text("一。,二。,1.0\n三。,四。,2.0\n")
  (tmp_path / "test.eng").write_text("Secret test line.\n")
  (tmp_path / "mono.txt").write_text("First sentence. Second one! Secret test line.\n")
  corpus = multilingual.prepare(
      mono=[f"en:{tmp_path / 'mono.txt'}"],
      parallel=[f"en-de:{tmp_path / 'a.en'}|{tmp_path / 'a.de'}", f"en-zh:{tmp_path / 'bi.txt'}",
                f"en-zh:{tmp_path / 't_en.csv'}|{tmp_path / 't_zh.csv'}#0,1"],
      exclude=[str(tmp_path / "test.eng")], cache_dir=str(tmp_path / "cache"))
  rows = [line.rstrip("\n").split("\t") for line in open(corpus.parallel_file, encoding="utf-8")]
  pairs = {(r[0], r[1]) for r in rows}
  assert pairs == {("Hello there.", "Hallo."), ("Good night.", "Gute Nacht."), ("I run.", "我跑。"),
                   ("One.", "一。"), ("Three.", "三。"), ("Two.", "二。"), ("Four.", "四。")}
  en = open(corpus.mono_files["en"], encoding="utf-8").read().splitlines()
  assert "Secret test line." not in en and {"First sentence.", "Second one!", "I run."} <= set(en)
  assert corpus.stats["dropped_pairs"] == 2 and corpus.stats["pairs"]["en-zh"] == 5
  assert "Gute Nacht." in open(corpus.mono_files["de"], encoding="utf-8").read()
  # Cached: a second call reads the same files without re-parsing.
  again = multilingual.prepare(
      mono=[f"en:{tmp_path / 'mono.txt'}"],
      parallel=[f"en-de:{tmp_path / 'a.en'}|{tmp_path / 'a.de'}", f"en-zh:{tmp_path / 'bi.txt'}",
                f"en-zh:{tmp_path / 't_en.csv'}|{tmp_path / 't_zh.csv'}#0,1"],
      exclude=[str(tmp_path / "test.eng")], cache_dir=str(tmp_path / "cache"))
  assert again == corpus
  (tmp_path / "short.de").write_text("Hallo.\n")
  with pytest.raises(ClowlabError, match="not aligned"):
    multilingual.prepare(parallel=[f"en-de:{tmp_path / 'a.en'}|{tmp_path / 'short.de'}"],
                         cache_dir=str(tmp_path / "cache"))
  with pytest.raises(ClowlabError, match="SRC-TGT:PATH"):
    multilingual.prepare(parallel=[f"{tmp_path / 'bi.txt'}"], cache_dir=str(tmp_path / "c"))


def test_one_token_per_line_sources(tmp_path):
  # CoNLL / MSRA NER layout: token<TAB>tag, blocks separated by (possibly repeated) blank lines.
  (tmp_path / "ner.txt").write_text("\n我\tO\n爱\tO\n北\tB-LOC\n京\tI-LOC\n\n\n"
                                    "iPhone\tO\n很\tO\n好\tO\n\n", encoding="utf-8")
  spec = str(tmp_path / "ner.txt")
  assert multilingual.file_texts(spec + "#@chars") == ["我爱北京", "iPhone很好"]
  assert multilingual.file_texts(spec + "#@tokens") == ["我 爱 北 京", "iPhone 很 好"]
  corpus = multilingual.prepare(mono=[f"zh:{spec}#@chars"], cache_dir=str(tmp_path / "c"))
  assert open(corpus.mono_files["zh"], encoding="utf-8").read().splitlines() == [
      "我爱北京", "iPhone很好"]
  with pytest.raises(ClowlabError, match="@chars, @tokens"):
    multilingual.prepare(mono=[f"zh:{spec}#@words"], cache_dir=str(tmp_path / "c"))


def test_msra_ner_as_chinese_sentences(shared_data, tmp_path):  # about 5 s
  path = shared_data / "zh_text" / "dh_msra.txt.gz"
  corpus = multilingual.prepare(mono=[f"zh:{path}#@chars"], cache_dir=str(tmp_path))
  first_block = []
  with gzip.open(path, "rt", encoding="utf-8") as f:
    for line in iter(f.readline, "\n"):
      first_block.append(line.split("\t")[0])
  sentences = open(corpus.mono_files["zh"], encoding="utf-8").read().splitlines()
  assert len(sentences) > 40_000 and sentences[0] == "".join(first_block)


@pytest.mark.slow
def test_default_training_data_holds_no_tatoeba_test_sentence(shared_data, tmp_path):
  from clowlab.evaluators import xlingual  # noqa: PLC0415
  cfg = infoxlm_config.get_config()
  corpus = infoxlm.corpus(cfg, str(tmp_path))
  test = {multilingual.normalize(s) for s in xlingual.tatoeba_sentences(shared_data / "tatoeba")}
  assert len(test) > 14_000
  for path in corpus.mono_files.values():
    assert not test & set(open(path, encoding="utf-8").read().splitlines()), path
  sides = set()
  for line in open(corpus.parallel_file, encoding="utf-8"):
    s, t, *_ = line.rstrip("\n").split("\t")
    sides.update((s, t))
  assert not test & sides
  # The manythings en-zh file shares 378 pairs with the cmn test set: all of them were dropped.
  assert corpus.stats["dropped_pairs"] >= 378
  assert set(corpus.mono_files) >= {"en", "zh", "de", "fr", "es", "ru", "ja"}


def test_tlm_masks_both_halves_and_restarts_positions(tmp_path, tok_dir):
  cfg = _cfg(batch_size=64, **{"infoxlm.parallel_batch_size": 64})
  tok, data = _data(cfg, tok_dir, tmp_path)
  b = next(data)
  v = b["para"]["src_tgt"]
  ids, w, pos, types = v["input_ids"], v["mlm_weights"], v["position_ids"], v["token_type_ids"]
  chex.assert_shape([ids, w, pos, types], (64, cfg.seq_len))
  first_sep = np.argmax(ids == tok.sep_id, axis=1)
  L = np.arange(ids.shape[1])
  in_tgt = (L[None] > first_sep[:, None]) & (v["attention_mask"] > 0)
  in_src = (L[None] < first_sep[:, None]) & (v["attention_mask"] > 0)
  assert w[in_src].sum() > 0 and w[in_tgt].sum() > 0
  assert w[in_tgt].sum() / in_tgt.sum() == pytest.approx(0.15, abs=0.05)
  # Positions restart at the target half; the target half is token type 1.
  for i in range(4):
    s = first_sep[i] + 1
    n = int(v["attention_mask"][i].sum())
    np.testing.assert_array_equal(pos[i, :s], np.arange(s))
    np.testing.assert_array_equal(pos[i, s:n], np.arange(n - s))
    assert types[i, :s].sum() == 0 and (types[i, s:n] == 1).all()
  # The separate views for XLCo are unmasked.
  assert "mlm_weights" not in b["para"]["src"] and b["mono"]["mlm_weights"].sum() > 0
  # Without positional reset the numbering runs on.
  p2, _ = infoxlm.tlm_positions(ids, v["attention_mask"], tok.sep_id, reset=False)
  np.testing.assert_array_equal(p2[0, :int(v["attention_mask"][0].sum())],
                                np.arange(int(v["attention_mask"][0].sum())))


# ---------------------------------------------------------------------------------------------
# Queue


def _host_queue(Q, n, b, steps_keys):
  """Reference: the documented layout, written in plain numpy."""
  q = np.zeros((Q, steps_keys[0].shape[1]), np.float32)
  filled = np.zeros(Q, bool)
  S = Q // n
  for t, k in enumerate(steps_keys):
    ptr = (t * b) % S
    for d in range(n):
      q[d * S + ptr:d * S + ptr + b] = k[d * b:(d + 1) * b]
      filled[d * S + ptr:d * S + ptr + b] = True
  return q, filled


def test_queue_fills_in_order_across_8_devices():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  Q, B, D = 64, 16, 4
  row = NamedSharding(mesh, P(("data", "fsdp")))
  state = jax.device_put(queue_lib.init(Q, D), {"queue_QD": row, "queue_Q": row,
                                                "count": NamedSharding(mesh, P())})
  assert sharding.spec_for("method_state/queue/queue_QD", (Q, D), mesh) == P(("data", "fsdp"),
                                                                             None)
  enq = jax.jit(queue_lib.enqueue)
  keys = [np.arange(B * D, dtype=np.float32).reshape(B, D) + 1000 * (t + 1) for t in range(7)]
  with jax.set_mesh(mesh):
    for t, k in enumerate(keys):
      state = enq(state, jax.device_put(k, row))
      n_filled = int(np.asarray(state["queue_Q"]).sum())
      assert n_filled == min((t + 1) * B, Q)           # N steps -> N x global batch, up to Q
      want_q, want_f = _host_queue(Q, 8, B // 8, keys[:t + 1])
      np.testing.assert_array_equal(np.asarray(state["queue_QD"]), want_q)
      np.testing.assert_array_equal(np.asarray(state["queue_Q"]), want_f)
  assert int(state["count"]) == 7
  # Still one block of rows per device: the enqueue moved no data between devices.
  assert state["queue_QD"].sharding.is_equivalent_to(row, 2)
  # Full after Q/B = 4 steps; steps 5..7 overwrote steps 1..3 (FIFO): steps 4..7 remain.
  held = {int(x) // 1000 for x in np.asarray(state["queue_QD"])[:, 0]}
  assert held == {4, 5, 6, 7}
  with pytest.raises(ClowlabError, match="multiple of the global contrastive batch"):
    queue_lib.enqueue(queue_lib.init(40, D), jnp.zeros((B, D)))


def test_queue_loss_sharded_equals_single_device_with_gradients():
  rng = np.random.default_rng(0)
  Q, B, D = 64, 16, 8
  rows = rng.normal(size=(Q, D))
  state = {"queue_QD": jnp.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True),
                                   jnp.float32),
           "queue_Q": jnp.asarray(np.arange(Q) % 3 != 0), "count": jnp.int32(2)}
  q = jnp.asarray(rng.normal(size=(B, D)), jnp.float32)
  k = q + 0.3 * jnp.asarray(rng.normal(size=(B, D)), jnp.float32)
  f = lambda q, k, s: queue_lib.info_nce_with_queue(q, k, s, temperature=0.2)  # noqa: E731
  (l1, m1), g1 = jax.value_and_grad(f, has_aux=True)(q, k, state)
  # Reference: the logits written out in full.
  qn = q / jnp.linalg.norm(q, axis=1, keepdims=True)
  kn = k / jnp.linalg.norm(k, axis=1, keepdims=True)
  qun = state["queue_QD"][np.asarray(state["queue_Q"])]
  qun = qun / jnp.linalg.norm(qun, axis=1, keepdims=True)
  logits = jnp.concatenate([qn @ kn.T, qn @ qun.T], axis=1) / 0.2
  want = jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.diagonal(logits))
  chex.assert_trees_all_close(l1, want, rtol=1e-5)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  row = NamedSharding(mesh, P(("data", "fsdp")))
  put = lambda x: jax.device_put(x, row)  # noqa: E731
  s8 = {"queue_QD": put(state["queue_QD"]), "queue_Q": put(state["queue_Q"]),
        "count": state["count"]}
  with jax.set_mesh(mesh):
    (l8, m8), g8 = jax.jit(jax.value_and_grad(f, has_aux=True))(put(q), put(k), s8)
  chex.assert_trees_all_close(l8, l1, rtol=1e-5)
  chex.assert_trees_all_close(g8, g1, rtol=1e-4, atol=1e-7)
  chex.assert_trees_all_close(m8, m1, rtol=1e-5)
  # An empty queue: in-batch negatives only (no zero rows scored).
  empty = queue_lib.init(Q, D)
  l0, _ = queue_lib.info_nce_with_queue(q, k, empty, temperature=0.2)
  inb = (qn @ kn.T) / 0.2
  chex.assert_trees_all_close(l0, jnp.mean(jax.nn.logsumexp(inb, 1) - jnp.diagonal(inb)),
                              rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Momentum encoder and training


def test_momentum_is_an_ema_and_gets_no_gradient(tmp_path, tok_dir):
  cfg = _cfg(mesh={"data": 1, "fsdp": 1})
  tok, data = _data(cfg, tok_dir, tmp_path)
  ecfg = enc.EncoderConfig.from_dict({**dict(cfg.model), "vocab_size": tok.vocab_size,
                                      "pad_token_id": tok.pad_id})
  params = {"encoder": enc.init_params(jax.random.key(0), ecfg),
            **infoxlm.init_heads(jax.random.key(1), ecfg, cfg)}
  state = infoxlm.init_state(params, ecfg, cfg)
  chex.assert_trees_all_equal(state["momentum"]["encoder"], params["encoder"])
  # Make the momentum copy differ from the model, so the EMA is visible.
  state["momentum"] = jax.tree_util.tree_map(lambda x: x + 0.5, state["momentum"])
  batch = jax.tree_util.tree_map(jnp.asarray, next(data))
  f = jax.jit(lambda p, s: infoxlm.loss(p, s, batch, jax.random.key(2), ecfg, cfg))
  loss, metrics, new = f(params, state)
  m = cfg.infoxlm.momentum
  want = jax.tree_util.tree_map(lambda k, p: m * k + (1 - m) * p, state["momentum"],
                                {"encoder": params["encoder"], "xlco_proj": params["xlco_proj"]})
  chex.assert_trees_all_close(new["momentum"], want, rtol=1e-6)
  assert int(new["queue"]["count"]) == 1
  assert int(new["queue"]["queue_Q"].sum()) == cfg.infoxlm.parallel_batch_size
  for k in ("mmlm_loss", "tlm_loss", "xlco_loss", "xlco_accuracy", "xlco_queue_fill"):
    assert np.isfinite(float(metrics[k])), k
  # No gradient reaches the key encoder (or the queue) through the loss.
  g_mom, g_queue = jax.jit(jax.grad(
      lambda mom, qd: f(params, {"momentum": mom, "queue": {**state["queue"], "queue_QD": qd}})[0],
      argnums=(0, 1)))(state["momentum"], state["queue"]["queue_QD"])
  for leaf in jax.tree_util.tree_leaves((g_mom, g_queue)):
    assert float(jnp.abs(leaf).max()) == 0.0
  # ... while the query encoder does get one from XLCo alone.
  cfg_x = override(_cfg(mesh={"data": 1, "fsdp": 1}), **{"infoxlm.mmlm_weight": 0.0,
                                                         "infoxlm.tlm_weight": 0.0})
  g = jax.jit(jax.grad(
      lambda p: infoxlm.loss(p, state, batch, jax.random.key(2), ecfg, cfg_x)[0]))(params)
  assert float(jnp.abs(g["encoder"]["layers"]["attn"]["q"]["kernel"]).max()) > 0
  assert float(jnp.abs(g["xlco_proj"]["layers"][0]["kernel"]).max()) > 0


def _state(out):
  return jax.tree_util.tree_map(np.asarray, jax.device_get(
      {k: out["state"][k] for k in ("params", "method_state", "opt_state")}))


@pytest.mark.slow
def test_resume_is_bitwise_with_the_queue_and_optimiser_skips_the_key_encoder(tmp_path, tok_dir):
  cache = str(tok_dir.parent / "cache")  # data prepared and tokenized once for all three runs
  straight = train.train(_cfg(cache_dir=cache), _workdir(tmp_path, "a", tok_dir))
  w = _workdir(tmp_path, "b", tok_dir)
  first = train.train(_cfg(total_steps=3, cache_dir=cache), w)
  # The checkpoint holds the queue exactly as it was in memory.
  saved = _state(first)["method_state"]
  tgt = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), first["state"])
  with checkpoint.Manager(w) as mngr:
    r = mngr.restore(params_target=tgt["params"],
                     train_state_target={k: v for k, v in tgt.items() if k != "params"})
  restored = r["train_state"]["method_state"]
  assert restored["queue"]["queue_QD"].sharding.is_equivalent_to(
      first["state"]["method_state"]["queue"]["queue_QD"].sharding, 2)
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(restored), saved)
  resumed = train.train(_cfg(cache_dir=cache), w)
  a, b = _state(straight), _state(resumed)
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
  q = b["method_state"]["queue"]
  assert int(q["count"]) == 6 and int(q["queue_Q"].sum()) == 64  # 6 x 16 keys, queue of 64
  assert int(saved["queue"]["count"]) == 3 and int(saved["queue"]["queue_Q"].sum()) == 48
  # Only params have optimiser moments: the momentum encoder is not trained by gradients.
  opt_leaves = jax.tree_util.tree_leaves(b["opt_state"])
  n_params = sum(x.size for x in jax.tree_util.tree_leaves(b["params"]))
  n_opt = sum(x.size for x in opt_leaves)
  assert n_opt < 3 * n_params
  rows = [json.loads(line) for line in open(os.path.join(w, "metrics.jsonl"))]
  assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
  assert rows[-1]["xlco_queue_fill"] == 1.0 and "tlm_loss" in rows[-1]
  # Without XLCo: no projection, no state, no queue.
  cfg = _cfg(**{"infoxlm.xlco_weight": 0.0})
  ecfg = resumed["ecfg"]
  heads = infoxlm.init_heads(jax.random.key(0), ecfg, cfg)
  assert set(heads) == {"mlm_head"}
  assert infoxlm.init_state({"encoder": None, **heads}, ecfg, cfg) == {}


def test_continues_from_a_random_xlmr_directory(tmp_path, tok_dir):
  from clowlab.data import tokenizers  # noqa: PLC0415
  tok = tokenizers.load_tokenizer(str(tok_dir))
  xcfg = enc.EncoderConfig(vocab_size=tok.vocab_size, hidden_size=32, num_layers=2, num_heads=2,
                           intermediate_size=64, max_position_embeddings=40, type_vocab_size=1,
                           position_offset=2, pad_token_id=tok.pad_id, layer_norm_eps=1e-5,
                           model_type="xlm-roberta")
  params = enc.init_params(jax.random.key(0), xcfg)
  hf.save_hf(tmp_path / "xlmr", params, xcfg)
  cfg = _cfg(total_steps=2, init_from=str(tmp_path / "xlmr"), tokenizer=str(tok_dir), model={},
             mesh={"data": 1, "fsdp": -1}, cache_dir=str(tok_dir.parent / "cache"))
  out = train.train(cfg, str(tmp_path / "run"))
  assert out["ecfg"].model_type == "xlm-roberta" and out["ecfg"].type_vocab_size == 1
  st = out["state"]
  assert int(st["method_state"]["queue"]["count"]) == 2
  # TLM used token type 0 on both halves (XLM-R has one token type) and the run is finite.
  assert np.isfinite(out["metrics"]["tlm_loss"]) and np.isfinite(out["metrics"]["xlco_loss"])


def test_pod_config_on_cpu_says_what_to_run_instead(tmp_path):
  cfg = infoxlm_config.get_config()
  with pytest.raises(ClowlabError, match="configs/infoxlm.py:runlocal") as e:
    train.train(cfg, str(tmp_path / "pod"))
  assert "\n" not in str(e.value)
  assert not os.listdir(tmp_path / "pod") or not checkpoint.checkpoint_dir(
      str(tmp_path / "pod")).exists()


def test_bad_settings_are_named(tmp_path):
  ecfg = enc.EncoderConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=2,
                           intermediate_size=64)
  with pytest.raises(ClowlabError, match="xlco_layer=5"):
    infoxlm.xlco_layer(ecfg, _cfg(**{"infoxlm.xlco_layer": 5}).infoxlm)
  with pytest.raises(ClowlabError, match="queue size 40"):
    infoxlm.settings(_cfg(**{"infoxlm.queue_size": 40}))
  with pytest.raises(ClowlabError, match="momentum"):
    infoxlm.settings(_cfg(**{"infoxlm.momentum": 1.0}))
  with pytest.raises(ClowlabError, match="all 0"):
    infoxlm.settings(_cfg(**{"infoxlm.mmlm_weight": 0.0, "infoxlm.tlm_weight": 0.0,
                             "infoxlm.xlco_weight": 0.0}))
