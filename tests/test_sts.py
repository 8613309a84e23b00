"""STS evaluator: poolers and correlations; MiniLM on real STS-B pairs equals sentence-transformers."""
import jax
import numpy as np
import pytest

from clowlab.convert import hf
from clowlab.data import sources, tokenizers
from clowlab.errors import ClowlabError
from clowlab.evaluators import sts
from clowlab.models import encoder as enc

from conftest import DEMO_DATA


def test_poolers_and_errors():
  cfg = enc.EncoderConfig(vocab_size=20, hidden_size=8, num_layers=2, num_heads=2,
                          intermediate_size=16, max_position_embeddings=8)
  params = enc.init_params(jax.random.key(0), cfg)
  ids = np.array([[2, 5, 6, 0], [2, 7, 0, 0]], np.int32)
  mask = (ids > 0).astype(np.int32)
  out = enc.encode(params, ids, mask, cfg=cfg)
  mean = sts.pool(out, mask, "mean")
  np.testing.assert_allclose(mean[1], np.asarray(out.last_BLD[1, :2]).mean(0), rtol=1e-6)
  fl = sts.pool(out, mask, "first_last_avg")
  np.testing.assert_allclose(
      fl[0], (np.asarray(out.hidden_states_NBLD[1][0, :3]).mean(0) +
              np.asarray(out.last_BLD[0, :3]).mean(0)) / 2, rtol=1e-5)
  assert sts.pool(out, mask, "cls", params).shape == (2, 8)
  with pytest.raises(ClowlabError, match="unknown pooler 'max'; valid: cls"):
    sts.pooled_embed_fn(params, cfg, "max")
  c = sts.correlations(np.array([0.1, 0.5, 0.9]), np.array([1.0, 2.0, 5.0]))
  assert c["spearman"] == pytest.approx(1.0) and c["n"] == 3


def test_minilm_sts_matches_sentence_transformers(minilm_dir, tmp_path):
  pytest.importorskip("torch")
  st = pytest.importorskip("sentence_transformers")
  pairs = sources.load_pairs(str(DEMO_DATA / "sts_en_dev.csv"),
                             columns=("sentence1", "sentence2", "score"), cache_dir=str(tmp_path))
  pairs = pairs.select(range(200))
  m = hf.load_hf(minilm_dir)
  tok = tokenizers.load_tokenizer(str(minilm_dir))
  got = sts.evaluate(sts.pooled_embed_fn(m.params, m.cfg, "mean"), pairs, tok, seq_len=128)
  model = st.SentenceTransformer(str(minilm_dir), device="cpu")
  a = model.encode(pairs["text_a"], convert_to_numpy=True)
  b = model.encode(pairs["text_b"], convert_to_numpy=True)
  want = sts.correlations(sts.cosine(a, b), np.asarray(pairs["label"]))
  print("MiniLM STS-B dev[:200] Spearman clowlab %.6f vs sentence-transformers %.6f"
        % (got["spearman"], want["spearman"]))
  assert abs(got["spearman"] - want["spearman"]) < 1e-4
  assert got["spearman"] > 0.8
