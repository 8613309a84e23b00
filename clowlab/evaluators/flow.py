"""BERT-flow's evaluation ("flow_sts"): STS Spearman x 100 of the frozen encoder's raw pooled
vectors, BERT-whitening (each of flow.whitening_dims) and the flow latent side by side, each
with its isotropy, plus held-out bits/dim on the STS sentences. Keys without a prefix are the
method's own embedding (flow.embed).

Entry: {"type": "flow_sts", "sets": [{name, path, columns}, ...]} (config.eval.sts by default).
"""
from __future__ import annotations

import jax
import numpy as np

from clowlab.data import sources
from clowlab.evaluators import sts
from clowlab.methods import bert_flow, whitening
from clowlab.models import flow


def isotropy(x_ND: np.ndarray, pairs: int = 10_000, seed: int = 0) -> dict[str, float]:
  """Mean cosine of random sentence pairs (0 for an isotropic cloud), the largest covariance
  eigenvalue's share of the total variance, and log10 of the eigenvalue spread (max / min)."""
  x = np.asarray(x_ND, np.float64)
  rng = np.random.default_rng(seed)
  i, j = rng.integers(0, len(x), pairs), rng.integers(0, len(x), pairs)
  keep = i != j
  xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  cos = np.sum(xn[i[keep]] * xn[j[keep]], -1)
  eig = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False)), 1e-12, None)
  return {"mean_cos": float(cos.mean()), "top_eig_share": float(eig[-1] / eig.sum()),
          "log10_eig_spread": float(np.log10(eig[-1] / eig[0]))}


def run(spec: dict, ctx) -> dict[str, float]:
  """Entry {"type": "flow_sts", "sets": [{name, path, columns}, ...]}: see the module doc."""
  params, ecfg, cfg = ctx.params, ctx.ecfg, ctx.cfg
  c = bert_flow.settings(cfg)
  sets = sources.scored_pair_sets(spec.get("sets", []), ctx.cache_dir,
                                  spec.get("key", "eval.sts"))
  if not sets:
    return {}
  texts = list(dict.fromkeys(t for ds in sets.values() for t in
                             list(ds["text_a"]) + list(ds["text_b"])))
  x = bert_flow.encode_features(params["encoder"], ecfg, ctx.tokenizer, texts, c.pooler,
                                cfg.seq_len, ctx.cache_dir)
  row = {t: i for i, t in enumerate(texts)}
  fcfg = bert_flow.flow_config(ecfg, cfg)
  host = jax.device_get({k: params[k] for k in ("flow", "flow_const", "whitening")
                         if k in params})
  # One flow pass gives both the latent and the held-out bits/dim.
  z, logdet = jax.jit(lambda p, v: flow.forward(p["flow"], p.get("flow_const"), v, fcfg))(host, x)
  bpd = np.asarray(-flow.log_prob_of_latent(z, logdet) / (fcfg.dim * np.log(2.0)))
  z = np.asarray(z)
  variants = {"raw": x, "flow": z}
  for k in list(c.get("whitening_dims", [0]) or [0]):
    name = "whitening" if not k else f"whitening_{k}"
    variants[name] = np.asarray(whitening.apply(host["whitening"], x, int(k)))
  out = {"bits_per_dim": float(bpd.mean())}
  for name, v in variants.items():
    lookup = lambda ts, v=v: v[[row[t] for t in ts]]  # noqa: E731
    r = sts.evaluate(lookup, sets)
    out.update({f"{name}/{k}": float(val) for k, val in r.items()
                if not k.endswith("/n") and k != "n"})
    out.update({f"{name}/isotropy/{k}": val for k, val in isotropy(v).items()})
  own = c.get("embed", "flow")
  own_dim = int(c.get("embed_whitening_dim", 0))
  own = f"whitening_{own_dim}" if own == "whitening" and own_dim else own
  if own in variants:
    out.update({k[len(own) + 1:]: v for k, v in list(out.items()) if k.startswith(own + "/")
                and "/isotropy/" not in k})
  return out
