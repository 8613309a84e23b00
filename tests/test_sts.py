"""STS and retrieval evaluators: correlations and their two aggregations, exact sharded top-k
search, ranking metrics by hand, and MiniLM on real STS-B pairs equal to sentence-transformers."""
import numpy as np
import pytest

from clowlab import embed
from clowlab.data import sources
from clowlab.errors import ClowlabError
from clowlab.evaluators import retrieval, sts

from conftest import DEMO_DATA


class _Table:
  """A stand-in for a pairs dataset (column access by name)."""

  def __init__(self, **cols):
    self._cols = cols
    self.column_names = list(cols)

  def __getitem__(self, k):
    return self._cols[k]


def test_sts_aggregations():
  # A fake embedder: each text is "x,y" -> the vector (x, y).
  emb = lambda texts: np.array([[float(v) for v in t.split(",")] for t in texts])  # noqa: E731
  a = _Table(text_a=["1,0", "1,0", "1,0"], text_b=["1,0", "1,1", "0,1"], label=[5.0, 3.0, 0.0])
  b = _Table(text_a=["1,0", "1,0"], text_b=["0,1", "1,0.1"], label=[4.0, 1.0])  # anti-correlated
  r = sts.evaluate(emb, {"a": a, "b": b})
  assert r["a/spearman"] == pytest.approx(100.0) and r["b/spearman"] == pytest.approx(-100.0)
  assert r["spearman_wmean"] == pytest.approx((3 * 100 - 2 * 100) / 5)
  sims = np.concatenate([sts.cosine(emb(a["text_a"]), emb(a["text_b"])),
                         sts.cosine(emb(b["text_a"]), emb(b["text_b"]))])
  want = sts.correlations(sims, np.array([5.0, 3.0, 0.0, 4.0, 1.0]))["spearman"]
  assert r["spearman"] == pytest.approx(want) and r["n"] == 5
  with pytest.raises(ClowlabError, match="needs columns text_a, text_b, label"):
    sts.evaluate(emb, {"x": _Table(text_a=[], text_b=[])})


def test_search_is_exact_over_8_devices():
  rng = np.random.default_rng(0)
  corpus, queries = rng.normal(size=(1003, 16)), rng.normal(size=(37, 16))  # 1003: padded
  ids, scores = retrieval.search(queries, corpus, k=10, chunk=16)
  c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
  q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
  want = np.argsort(-(q @ c.T), axis=1)[:, :10]
  np.testing.assert_array_equal(ids, want)
  np.testing.assert_allclose(scores, np.take_along_axis(q @ c.T, want, 1), rtol=1e-5)
  assert ids.max() < 1003  # padding rows never come back


def test_ranking_metrics_by_hand():
  top = np.array([[3, 1, 2], [0, 5, 6]])
  m = retrieval.ranking_metrics(top, [{1}, {6, 0}], ks=(1, 3))
  assert m["recall@1"] == pytest.approx(100 * (0 + 0.5) / 2)
  assert m["recall@3"] == pytest.approx(100 * (1 + 1) / 2)
  assert m["mrr@10"] == pytest.approx(100 * (1 / 2 + 1) / 2)
  ndcg1 = (1 / np.log2(3)) / 1.0
  ndcg2 = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
  assert m["ndcg@10"] == pytest.approx(100 * (ndcg1 + ndcg2) / 2)


def test_aligned_retrieval_and_search_files(tmp_path):
  emb = lambda texts: np.array([[len(t), t.count("a") + 0.5] for t in texts], float)  # noqa: E731
  src = ["a", "bbbbbb", "aaab"]
  r = retrieval.evaluate_aligned(emb, src, list(src))
  assert r["acc_source_to_target"] == 100.0 and r["acc_target_to_source"] == 100.0
  with pytest.raises(ClowlabError, match="line-aligned"):
    retrieval.evaluate_aligned(emb, src, src[:2])
  (tmp_path / "q.tsv").write_text("id\ttext\nq1\taaab\nq2\tbbbbbb\n")
  (tmp_path / "c.tsv").write_text("d1\ta\nd2\tbbbbbb\nd3\taaab\n")
  (tmp_path / "r.tsv").write_text("q1\td3\t1\nq2\td2\t1\nq2\td1\t0\n")
  r = retrieval.evaluate_search(emb, retrieval.read_id_text(str(tmp_path / "q.tsv")),
                                retrieval.read_id_text(str(tmp_path / "c.tsv")),
                                retrieval.read_qrels(str(tmp_path / "r.tsv")))
  assert r["recall@1"] == 100.0 and r["num_queries"] == 2


def test_minilm_sts_matches_sentence_transformers(minilm_dir, tmp_path):
  pytest.importorskip("torch")
  st = pytest.importorskip("sentence_transformers")
  pairs = sources.load_pairs(str(DEMO_DATA / "sts_en_dev.csv"),
                             columns=("sentence1", "sentence2", "score"), cache_dir=str(tmp_path))
  pairs = pairs.select(range(200))
  got = sts.evaluate(embed.load(minilm_dir, "mean"), {"dev": pairs})
  model = st.SentenceTransformer(str(minilm_dir), device="cpu")
  a = model.encode(pairs["text_a"], convert_to_numpy=True)
  b = model.encode(pairs["text_b"], convert_to_numpy=True)
  want = sts.correlations(sts.cosine(a, b), np.asarray(pairs["label"]))
  print("MiniLM STS-B dev[:200] Spearman clowlab %.4f vs sentence-transformers %.4f"
        % (got["spearman"], want["spearman"]))
  assert abs(got["spearman"] - want["spearman"]) < 0.01
  assert got["spearman"] > 80
