"""Evaluators chosen by config (clowlab/evaluators/registry.py): config.evals entries replace a
method's own evaluation, types are checked before any work, a method supplies only its
embedding and MLM head, and the in-training evaluation goes through the same registry."""
import json

import ml_collections
import pytest

from clowlab import config_check, methods, train
from clowlab.errors import ClowlabError
from clowlab.evaluators import registry

from test_finetune import tiny  # noqa: F401  (module-scoped fixture)
from tiny import DEMO_DATA, tiny_cfg

STS_DEMO = {"name": "sts_en_demo", "path": str(DEMO_DATA / "sts_en_dev.csv"),
            "columns": ["sentence1", "sentence2", "score"]}


def _ctx(tiny, method, **cfg):  # noqa: F811
  base = {"seq_len": 32, "batch_size": 8, "seed": 0, "evals": {}, "data": {"eval": []},
          "mlm": {"mask_prob": 0.15, "whole_word": False, "max_predictions": 0}}
  return registry.EvalContext(method=methods.get(method), params=tiny.params, ecfg=tiny.ecfg,
                              cfg=ml_collections.ConfigDict({**base, **cfg}),
                              tokenizer=tiny.tokenizer, cache_dir="")


def test_unknown_type_names_the_valid_ones():
  with pytest.raises(ClowlabError, match="unknown evaluator type 'stss'; valid: mlm, sts, "
                     "flow_sts, tatoeba, xsts, bitext, xsts_files"):
    registry.get("stss")


@pytest.mark.parametrize("entry, needle", [
    ({"type": "stss"}, "evals.dev needs a 'type' among mlm, sts"),
    ({"sets": []}, "evals.dev needs a 'type' among"),
    ("sts", "evals.dev needs a 'type' among")])
def test_bad_entries_are_refused_before_any_work(entry, needle):
  cfg = tiny_cfg()
  cfg.evals = {"dev": entry} if isinstance(entry, dict) else {"dev": entry}
  with pytest.raises(ClowlabError, match=needle):
    config_check.check(cfg)


def test_config_evals_replace_the_methods_own(tiny):  # noqa: F811
  """MLM's own evaluation is held-out MLM; config.evals asks for STS instead (MLM has no
  pooler of its own: mean pooling)."""
  ctx = _ctx(tiny, "mlm", data={"eval": [str(DEMO_DATA / "en_wikitext2_test.txt")]})
  assert list(registry.entries(ctx.method, ctx.cfg, "")) == ["mlm"]
  ctx = _ctx(tiny, "mlm", evals={"demo": {"type": "sts", "sets": [STS_DEMO]}},
             data={"eval": [str(DEMO_DATA / "en_wikitext2_test.txt")]})
  r = registry.evaluate(ctx)
  assert set(r) == {"sts_en_demo/spearman", "sts_en_demo/pearson", "spearman", "pearson",
                    "spearman_wmean"}
  assert -100 <= r["spearman"] <= 100


def test_a_method_without_evaluation_or_head_is_named(tiny):  # noqa: F811
  with pytest.raises(ClowlabError, match="method 'coco_lm' has no evaluator of its own; use "
                     "--config.mode=train, or name evaluators in config.evals"):
    registry.evaluate(_ctx(tiny, "coco_lm"))
  ctx = _ctx(tiny, "simcse", evals={"heldout": {"type": "mlm", "files": [
      str(DEMO_DATA / "en_wikitext2_test.txt")]}})
  with pytest.raises(ClowlabError, match="evaluator 'mlm' needs a masked-LM head; method "
                     "'simcse' has none"):
    registry.evaluate(ctx)


def test_training_evaluates_what_config_evals_names(tmp_path):
  """The in-training evaluation runs config.evals: an MLM run judged on STS and held-out MLM."""
  cfg = tiny_cfg(total_steps=2, checkpoint_every=2, mode="train_and_eval")
  cfg.evals = {"demo": {"type": "sts", "sets": [STS_DEMO]},
               "heldout": {"type": "mlm", "files": [str(DEMO_DATA / "en_wikitext2_test.txt")]}}
  w = tmp_path / "w"
  train.train(cfg, str(w))
  rows = [json.loads(line) for line in (w / "metrics.jsonl").read_text().splitlines()]
  ev = [r for r in rows if r.get("split") == "eval"]
  assert len(ev) == 1 and ev[0]["step"] == 2
  assert {"sts_en_demo/spearman", "spearman", "mlm_loss", "perplexity"} <= set(ev[0])
  # Evaluation may change between a run and its resume (as eval.* may).
  cfg.evals = {}
  cfg.total_steps = 3
  train.train(cfg, str(w))


def test_no_method_module_evaluates_or_embeds_through_another():
  """Methods import no other method but methods/mlm.py (the documented shared base of the
  masked-LM family) and nothing above them (evaluators, embed, the engine)."""
  import ast  # noqa: PLC0415
  import pathlib  # noqa: PLC0415
  root = pathlib.Path(methods.__file__).parent
  names = {p.stem for p in root.glob("*.py")} - {"__init__"}
  for path in root.glob("*.py"):
    if path.stem == "__init__":
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      mods = []
      if isinstance(node, ast.ImportFrom) and node.module:
        mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
      elif isinstance(node, ast.Import):
        mods = [a.name for a in node.names]
      for m in mods:
        if m.startswith("clowlab.methods."):
          other = m.split(".")[2]
          assert other not in names or other in ("base", "mlm", "whitening", path.stem), \
              f"{path.name} imports methods/{other}.py"
        top = m.split(".")[1] if m.startswith("clowlab.") else ""
        assert top not in ("evaluators", "embed", "train", "evaluate", "checkpoint", "aot",
                           "convert", "main"), f"{path.name} imports clowlab.{top}"
