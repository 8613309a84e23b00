"""A Glow-style normalizing flow on vectors (BERT-flow, Li et al., EMNLP 2020), as pure functions.

    params, const = init(rng, fcfg)                      # const: fixed permutations, LU's P/sign
    params = data_init(params, const, x_BD, fcfg)        # ActNorm from the first batch's stats
    z_BD, logdet_B = forward(params, const, x_BD, fcfg)  # x -> z, exact log|det dz/dx|
    x_BD = inverse(params, const, z_BD, fcfg)            # z -> x
    bpd_B = bits_per_dim(params, const, x_BD, fcfg)      # -log p(x) / (D ln 2), the MLE loss

Layout (the authors' `glow_ops_1x1.py`, itself tensor2tensor's Glow, on a 1x1 "image"):
`levels` levels of `depth` steps; a step is ActNorm -> permutation -> coupling; between levels
half of the dimensions are factored out under a standard-normal prior (multi-scale). The latent
z is the concatenation [factored-out parts..., last level's output], D dims like x.

- ActNorm: y = (x + b) * exp(logs * logscale_factor); data-dependent init sets b and logs so the
  first batch's output has zero mean and unit variance per dimension.
- Permutation: "reverse" (the authors' default; fixed), "shuffle" (a fixed random permutation),
  "conv1x1" (an invertible 1x1 convolution W = a learned D x D matrix, random-orthogonal init,
  log|det W| by slogdet) or "lu" (Glow's LU-parametrised 1x1: W = P L (U + diag(sign * e^logs)),
  P and sign fixed, log|det W| = sum(logs)).
- Coupling: x = [x1, x2]; an MLP nn(x1) (dense -> ActNorm -> ReLU, twice, then a zero-initialised
  dense with output scale, so every step starts as the identity on x2) gives
  "additive": z2 = x2 + nn(x1)   or   "affine": z2 = (x2 + shift) * sigmoid(raw + 2).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from clowlab.errors import ClowlabError

COUPLINGS = ("additive", "affine")
PERMUTATIONS = ("reverse", "shuffle", "conv1x1", "lu")
STD_FLOOR = 1e-3  # ActNorm init: a std below this x the mean std marks a degenerate dimension


@dataclasses.dataclass(frozen=True)
class FlowConfig:
  dim: int
  levels: int = 3
  depth: int = 3
  coupling: str = "additive"
  width: int = 32                 # hidden width of the coupling MLPs
  permutation: str = "reverse"
  logscale_factor: float = 3.0    # ActNorm/zero-layer log-scales are learned divided by this
  init_std: float = 0.05          # the coupling MLPs' hidden kernels (Glow's default init)

  def __post_init__(self):
    if self.coupling not in COUPLINGS:
      raise ClowlabError(f"clowlab: flow.coupling={self.coupling!r}; valid: "
                         f"{', '.join(COUPLINGS)}.")
    if self.permutation not in PERMUTATIONS:
      raise ClowlabError(f"clowlab: flow.permutation={self.permutation!r}; valid: "
                         f"{', '.join(PERMUTATIONS)}.")
    if self.levels < 1 or self.depth < 1:
      raise ClowlabError(f"clowlab: flow.levels and flow.depth must be >= 1, got "
                         f"{self.levels} and {self.depth}.")
    if min(self.level_dims()) < 2:
      raise ClowlabError(f"clowlab: a {self.levels}-level flow halves dim={self.dim} "
                         f"{self.levels - 1} times down to {min(self.level_dims())}; every "
                         "level needs >= 2 dims. Use fewer flow.levels.")

  def level_dims(self) -> list[int]:
    """Width of x at each level (the first `d - d // 2` dims are kept at each factor-out)."""
    dims, d = [], self.dim
    for _ in range(self.levels):
      dims.append(d)
      d = d - d // 2
    return dims

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> "FlowConfig":
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(d).items() if k in names})


def _split(d: int) -> tuple[int, int]:
  """Coupling halves: x1 (conditioning) and x2 (transformed)."""
  return d - d // 2, d // 2


# ---------------------------------------------------------------------------------------------
# Initialisation


def _init_step(rng, d: int, fcfg: FlowConfig):
  k_perm, k1, k2 = jax.random.split(rng, 3)
  d1, d2 = _split(d)
  out_dim = d2 if fcfg.coupling == "additive" else 2 * d2
  w = fcfg.width
  params = {
      "actnorm": {"bias": jnp.zeros((d,)), "logs": jnp.zeros((d,))},
      "coupling": {
          "dense_0": {"kernel": fcfg.init_std * jax.random.normal(k1, (d1, w)),
                      "actnorm": {"bias": jnp.zeros((w,)), "logs": jnp.zeros((w,))}},
          "dense_1": {"kernel": fcfg.init_std * jax.random.normal(k2, (w, w)),
                      "actnorm": {"bias": jnp.zeros((w,)), "logs": jnp.zeros((w,))}},
          # Zero-initialised: each coupling starts as the identity.
          "out": {"kernel": jnp.zeros((w, out_dim)), "bias": jnp.zeros((out_dim,)),
                  "logs": jnp.zeros((out_dim,))},
      },
  }
  const = {}
  if fcfg.permutation == "shuffle":
    const["perm"] = jax.random.permutation(k_perm, d).astype(jnp.int32)
  elif fcfg.permutation in ("conv1x1", "lu"):
    q, r = jnp.linalg.qr(jax.random.normal(k_perm, (d, d)))
    q = q * jnp.sign(jnp.diag(r))[None, :]  # Haar-uniform rotation
    if fcfg.permutation == "conv1x1":
      params["perm"] = {"kernel": q}
    else:
      p, lower, upper = jax.scipy.linalg.lu(q)
      s = jnp.diag(upper)
      params["perm"] = {"lower": jnp.tril(lower, -1), "upper": jnp.triu(upper, 1),
                        "logs": jnp.log(jnp.abs(s))}
      const["perm"] = {"p": p, "sign": jnp.sign(s)}
  return params, const


def init(rng: jax.Array, fcfg: FlowConfig):
  """(params, const): trainable parameters and fixed buffers (never trained)."""
  params, const = {}, {}
  for l, d in enumerate(fcfg.level_dims()):
    for s in range(fcfg.depth):
      p, c = _init_step(jax.random.fold_in(rng, l * fcfg.depth + s), d, fcfg)
      params.setdefault(f"level_{l}", {})[f"step_{s}"] = p
      const.setdefault(f"level_{l}", {})[f"step_{s}"] = c
  return params, const


# ---------------------------------------------------------------------------------------------
# Layers. Each returns (y, logdet_B, params): with init=True the params are the data-dependent
# initialisation computed from this x (ActNorm); otherwise they come back unchanged.


def _actnorm(p, x_BD, fcfg: FlowConfig, init: bool):
  lsf = fcfg.logscale_factor
  if init:
    mean_D = x_BD.mean(0)
    std_D = jnp.sqrt(((x_BD - mean_D) ** 2).mean(0))
    # A (near-)constant dimension (all-MiniLM-L6-v2's last layer has three, ~1e-32) would get a
    # 1e6 scale from every ActNorm, compounding over the steps until the gradients overflow
    # float32: such dimensions are scaled like a typical one instead (no amplification).
    typical = std_D.mean()
    std_D = jnp.where(std_D < STD_FLOOR * typical, typical, std_D)
    p = {"bias": -mean_D, "logs": jnp.log(1.0 / (std_D + 1e-6)) / lsf}
  logs_D = p["logs"] * lsf
  y = (x_BD + p["bias"]) * jnp.exp(logs_D)
  return y, jnp.broadcast_to(logs_D.sum(), x_BD.shape[:1]), p


def _actnorm_inverse(p, y_BD, fcfg: FlowConfig):
  return y_BD * jnp.exp(-p["logs"] * fcfg.logscale_factor) - p["bias"]


def _lu_matrix(p, c):
  d = p["logs"].shape[0]
  lower = p["lower"] * jnp.tril(jnp.ones((d, d)), -1) + jnp.eye(d)
  upper = p["upper"] * jnp.triu(jnp.ones((d, d)), 1) + jnp.diag(c["sign"] * jnp.exp(p["logs"]))
  return c["p"] @ lower @ upper


def _permute(p, c, x_BD, fcfg: FlowConfig):
  zero = jnp.zeros(x_BD.shape[:1], x_BD.dtype)
  kind = fcfg.permutation
  if kind == "reverse":
    return x_BD[:, ::-1], zero
  if kind == "shuffle":
    return x_BD[:, c["perm"]], zero
  if kind == "conv1x1":
    w = p["perm"]["kernel"]
    return x_BD @ w, jnp.broadcast_to(jnp.linalg.slogdet(w)[1], zero.shape)
  w = _lu_matrix(p["perm"], c["perm"])
  return x_BD @ w, jnp.broadcast_to(p["perm"]["logs"].sum(), zero.shape)


def _permute_inverse(p, c, y_BD, fcfg: FlowConfig):
  kind = fcfg.permutation
  if kind == "reverse":
    return y_BD[:, ::-1]
  if kind == "shuffle":
    return y_BD[:, jnp.argsort(c["perm"])]
  w = p["perm"]["kernel"] if kind == "conv1x1" else _lu_matrix(p["perm"], c["perm"])
  return jnp.linalg.solve(w.T, y_BD.T).T


def _coupling_net(p, x1_BD, fcfg: FlowConfig, init: bool):
  h = x1_BD
  new = dict(p)
  for name in ("dense_0", "dense_1"):
    h = h @ p[name]["kernel"]
    h, _, an = _actnorm(p[name]["actnorm"], h, fcfg, init)
    new[name] = {**p[name], "actnorm": an}
    h = jax.nn.relu(h)
  o = p["out"]
  out = (h @ o["kernel"] + o["bias"]) * jnp.exp(o["logs"] * fcfg.logscale_factor)
  return out, new


def _coupling(p, x_BD, fcfg: FlowConfig, init: bool, reverse: bool = False):
  d1, _ = _split(x_BD.shape[-1])
  x1, x2 = x_BD[:, :d1], x_BD[:, d1:]
  h, p = _coupling_net(p, x1, fcfg, init)
  if fcfg.coupling == "additive":
    z2 = x2 - h if reverse else x2 + h
    logdet = jnp.zeros(x_BD.shape[:1], x_BD.dtype)
  else:
    shift, scale = h[:, 0::2], jax.nn.sigmoid(h[:, 1::2] + 2.0)
    z2 = x2 / scale - shift if reverse else (x2 + shift) * scale
    logdet = jnp.log(scale).sum(-1)
  return jnp.concatenate([x1, z2], -1), logdet, p


# ---------------------------------------------------------------------------------------------
# The flow


def _const(const, level: int, step: int) -> dict:
  # Steps without fixed buffers have empty dicts, which serialisers may drop: default to {}.
  return (const or {}).get(f"level_{level}", {}).get(f"step_{step}", {})


def _forward(params, const, x_BD, fcfg: FlowConfig, init: bool):
  x = x_BD.astype(jnp.float32)
  logdet = jnp.zeros(x.shape[:1], jnp.float32)
  factored, new = [], {}
  for l in range(fcfg.levels):
    for s in range(fcfg.depth):
      p, c = params[f"level_{l}"][f"step_{s}"], _const(const, l, s)
      x, ld0, an = _actnorm(p["actnorm"], x, fcfg, init)
      x, ld1 = _permute(p, c, x, fcfg)
      x, ld2, cp = _coupling(p["coupling"], x, fcfg, init)
      logdet = logdet + ld0 + ld1 + ld2
      new.setdefault(f"level_{l}", {})[f"step_{s}"] = {**p, "actnorm": an, "coupling": cp}
    if l < fcfg.levels - 1:
      keep = x.shape[-1] - x.shape[-1] // 2
      factored.append(x[:, keep:])   # prior N(0, I): eps = x2 (the authors' split)
      x = x[:, :keep]
  return jnp.concatenate(factored + [x], -1), logdet, new


def forward(params, const, x_BD, fcfg: FlowConfig):
  """x -> (z, log|det dz/dx|) per row."""
  z, logdet, _ = _forward(params, const, x_BD, fcfg, init=False)
  return z, logdet


def data_init(params, const, x_BD, fcfg: FlowConfig):
  """Params with every ActNorm set from the statistics of its input on this batch (Glow's
  data-dependent initialisation, run once before training on the first batch)."""
  return _forward(params, const, x_BD, fcfg, init=True)[2]


def inverse(params, const, z_BD, fcfg: FlowConfig):
  """z -> x, the exact inverse of `forward`."""
  dims = fcfg.level_dims()
  # Undo the concatenation: [eps_0, ..., eps_{L-2}, x_top].
  sizes = [d // 2 for d in dims[:-1]]
  parts, off = [], 0
  for n in sizes:
    parts.append(z_BD[:, off:off + n])
    off += n
  x = z_BD[:, off:]
  for l in reversed(range(fcfg.levels)):
    if l < fcfg.levels - 1:
      x = jnp.concatenate([x, parts[l]], -1)
    for s in reversed(range(fcfg.depth)):
      p, c = params[f"level_{l}"][f"step_{s}"], _const(const, l, s)
      x, _, _ = _coupling(p["coupling"], x, fcfg, False, reverse=True)
      x = _permute_inverse(p, c, x, fcfg)
      x = _actnorm_inverse(p["actnorm"], x, fcfg)
  return x


def log_prob_of_latent(z_BD, logdet_B):
  """log p(x) per row (nats) from forward's (z, log-det), with z ~ N(0, I)."""
  return -0.5 * (z_BD ** 2 + math.log(2 * math.pi)).sum(-1) + logdet_B


def log_prob(params, const, x_BD, fcfg: FlowConfig):
  """log p(x) per row (nats), with z ~ N(0, I)."""
  return log_prob_of_latent(*forward(params, const, x_BD, fcfg))


def bits_per_dim(params, const, x_BD, fcfg: FlowConfig):
  """-log p(x) / (D ln 2) per row: the maximum-likelihood loss in the authors' units."""
  return -log_prob(params, const, x_BD, fcfg) / (fcfg.dim * math.log(2.0))
