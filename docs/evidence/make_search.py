"""A semantic-search set from STS-B test (real data): queries = the distinct sentence1 of pairs
scored >= 4, corpus = every distinct sentence2 of the split (texts that are also queries left
out, so a query never retrieves itself), relevant = the sentence2 of its pairs scored >= 4."""
import csv
import pathlib
rows = list(csv.reader(open(pathlib.Path(__file__).resolve().parents[3] / "shared/data/stsb_multi_mt/stsb-en-test.csv", newline="", encoding="utf-8")))
queries = {a for a, b, s in rows if float(s) >= 4 and a != b}
corpus = {}
for a, b, _ in rows:
  if b not in queries:
    corpus.setdefault(b, f"d{len(corpus)}")
q, n = {}, 0
with open("/tmp/search_qrels.tsv", "w") as f:
  for a, b, s in rows:
    if float(s) >= 4 and a in queries and b in corpus:
      q.setdefault(a, f"q{len(q)}")
      f.write(f"{q[a]}\t{corpus[b]}\t1\n")
with open("/tmp/search_queries.tsv", "w") as f:
  for t, i in q.items():
    f.write(f"{i}\t{t}\n")
with open("/tmp/search_corpus.tsv", "w") as f:
  for t, i in corpus.items():
    f.write(f"{i}\t{t}\n")
print(len(q), "queries,", len(corpus), "corpus sentences")
