"""Held-out masked-LM: loss, accuracy and perplexity of the method's MLM head (Method.mlm_eval)
on text files, with fixed masks (the masker is keyed by the seed and the record).

Entry: {"type": "mlm", "files": [PATH, ...], "split_sentences": bool}.
"""
from __future__ import annotations

import math

import jax

from clowlab.data import masking, pipeline, sources
from clowlab.errors import ClowlabError


def run(spec: dict, ctx) -> dict[str, float]:
  cfg = ctx.cfg
  files = list(spec.get("files", []) or [])
  if not files:
    return {}
  if ctx.method.mlm_eval is None:
    raise ClowlabError(f"clowlab: evaluator 'mlm' needs a masked-LM head; method "
                       f"{ctx.method.name!r} has none. Drop the entry from config.evals.")
  ds = sources.load_text(files, cache_dir=ctx.cache_dir)
  if spec.get("split_sentences", False):
    ds = ds.map(sources.split_sentences, batched=True, remove_columns=ds.column_names)
  tok_ds = pipeline.tokenize(ds, ctx.tokenizer, seq_len=cfg.seq_len, cache_dir=ctx.cache_dir)
  masker = masking.MlmMasker.from_tokenizer(ctx.tokenizer, masking.MaskingConfig(
      mask_prob=cfg.mlm.mask_prob, whole_word=cfg.mlm.whole_word))
  loader = pipeline.make_loader(tok_ds, global_batch_size=cfg.batch_size, seed=cfg.seed,
                                shuffle=False, num_epochs=1, drop_remainder=False,
                                process_index=ctx.process_index,
                                process_count=ctx.process_count, transform=masker)
  head, ecfg = ctx.method.mlm_eval, ctx.ecfg
  fn = jax.jit(lambda p, b: head(p, b, ecfg, cfg))
  ce = n = correct = 0.0
  for batch in loader:
    batch = {k: v for k, v in batch.items() if k not in ("valid", "index")}
    c, k, r = jax.device_get(fn(ctx.params, ctx.global_batch(batch)))
    ce, n, correct = ce + float(c), n + float(k), correct + float(r)
  n = max(n, 1.0)
  return {"mlm_loss": ce / n, "mlm_accuracy": correct / n, "perplexity": math.exp(ce / n)}
