"""The runlocal configs do not train on the demo sentences they evaluate on.

The demo zh_sentences.txt and the parallel files share sentences with the demo STS sets (row-
aligned STS-B dev translations), which CLOWER's and InfoXLM's runlocal evaluations use.
"""
import pathlib

from clowlab.data import multilingual
from clowlab.methods import clower, infoxlm
from configs import clower as clower_config
from configs import infoxlm as infoxlm_config

DEMO = pathlib.Path(__file__).resolve().parents[1] / "clowlab" / "demo_data"


def _sts_sentences(*names):
  return multilingual.excluded_sentences(
      [f"{DEMO / n}#{c}" for n in names for c in ("sentence1", "sentence2")])


def _lines(path):
  return set(pathlib.Path(path).read_text(encoding="utf-8").splitlines())


def test_clower_runlocal_trains_on_no_sts_sentence(tmp_path):
  cfg = clower_config.get_config("runlocal")
  held = _sts_sentences("sts_zh_dev.csv")
  raw = {multilingual.normalize(t) for t in _lines(DEMO / "zh_sentences.txt") if t.strip()}
  assert len(raw & held) >= 90  # what the exclusion is for
  trained = _lines(clower.corpus_file(cfg, str(tmp_path)))
  assert len(trained) > 2000 and not trained & held


def test_infoxlm_runlocal_trains_on_no_sts_sentence(tmp_path):
  cfg = infoxlm_config.get_config("runlocal")
  held = _sts_sentences("sts_zh_dev.csv", "sts_en_dev.csv")
  corpus = infoxlm.corpus(cfg, str(tmp_path))
  sides = set()
  for line in open(corpus.parallel_file, encoding="utf-8"):
    s, t, *_ = line.rstrip("\n").split("\t")
    sides.update((s, t))
  assert len(sides) > 2000 and not sides & held
  assert corpus.stats["dropped_pairs"] >= 131
  for lang, path in corpus.mono_files.items():
    assert not _lines(path) & held, lang
