"""Fuzzed Hugging Face model directories (issue 10, item 5): missing, renamed, reshaped or retyped
tensors, cut or random weight files, broken config.json, tokenizers whose vocab does not match.

One small random BertForMaskedLM directory (safetensors + a WordPiece tokenizer) is built per
module; each hypothesis example copies it, applies one mutation and loads the copy through
clowlab's entry points (hf.load_hf, tokenizers.load_tokenizer + check_vocab_matches,
train.resolve_model, and train.train with config.init_from). The contract per case:
  * a valid mutation (fp16/bf16 weights, extra unused tensors, TF-style LayerNorm names, a
    pytorch_model.bin or sharded checkpoint instead of model.safetensors, ...) loads, with the
    base model's shapes and values;
  * every invalid one raises ClowlabError whose message names the directory or file and the
    offending tensor or key, and says what to do; through train.train it does so before any jit.
Any other exception (KeyError, SafetensorError, a jax shape error, ...) fails the test.
Each case is counted with fuzzlog ("fuzzed cases" in the pytest summary).
"""
import dataclasses
import json
import pathlib
import re
import shutil
import tempfile
from collections.abc import Callable
from unittest import mock

import jax
import ml_collections
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

import fuzzlog
from clowlab import train
from clowlab.convert import hf
from clowlab.data import tokenizers
from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc

from tiny import tiny_cfg

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = ("the man is playing guitar on stage dog cat in of and to it was he she we they you "
          "this that with for at by from not but are be have had or so . , ! ? ; : - ' a b c"
          ).split()
LETTERS = list("defghijklmnopqrstuvwxyz")
VOCAB = SPECIALS + _WORDS + LETTERS + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
V, D, F, LAYERS, MAX_POS = len(VOCAB), 32, 64, 2, 64
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# The message names what to do (a sentence after the one saying what is wrong).
_FIX = re.compile(r"\b(re-save|fix|point|copy|convert|install|set|use|add|check|choose|leave|"
                  r"pass|save|remove)\b", re.IGNORECASE)

# Profile (derandomized in CI) comes from conftest; only the budget is set here, per test; the
# "explore" profile (HYPOTHESIS_PROFILE=explore) raises every test to its own max_examples.
_EXPLORE = settings.default.max_examples > 100


def _n(n):
  return settings.default.max_examples if _EXPLORE else n


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.data_too_large])


def _tokenizer(vocab):
  from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
  tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
      special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
  tok.decoder = decoders.WordPiece()
  return transformers.BertTokenizerFast(
      tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
      sep_token="[SEP]", mask_token="[MASK]")


@dataclasses.dataclass
class Base:
  dir: pathlib.Path
  root: pathlib.Path           # where the per-example copies go
  model: hf.HFModel = dataclasses.field(repr=False)  # load_hf of the untouched directory
  tokenizer: tokenizers.Tokenizer = dataclasses.field(repr=False)

  def copy(self) -> pathlib.Path:
    d = pathlib.Path(tempfile.mkdtemp(dir=self.root)) / "model"
    shutil.copytree(self.dir, d)
    return d


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  root = tmp_path_factory.mktemp("fuzz_hf")
  d = root / "base"
  torch.manual_seed(0)
  model = transformers.BertForMaskedLM(transformers.BertConfig(
      vocab_size=V, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=2,
      intermediate_size=F, max_position_embeddings=MAX_POS))
  with torch.no_grad():  # non-trivial LayerNorm / bias values: a swapped tensor cannot pass
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  model.save_pretrained(str(d))
  _tokenizer(VOCAB).save_pretrained(str(d))
  assert {p.name for p in d.iterdir()} == {"config.json", "model.safetensors", *TOKENIZER_FILES}
  tok = tokenizers.load_tokenizer(str(d))
  assert tok.vocab_size == V  # loaded from the directory, not a 5-token fallback
  m = hf.load_hf(d)
  assert m.cfg.vocab_size == V and m.mlm_head is not None
  saved = load_file(str(d / "model.safetensors"))
  assert {k: v.shape for k, v in saved.items()} == BASE_SHAPES  # what the strategies assume
  cases = root / "cases"
  cases.mkdir()
  return Base(d, cases, m, tok)


# ---------------------------------------------------------------------------------------------
# Cases: a mutation of the base directory and what must come of it


@dataclasses.dataclass
class Case:
  klass: str                              # the fuzzlog input class
  label: str                              # what was done (shown by hypothesis on failure)
  apply: Callable[[pathlib.Path], None] = dataclasses.field(repr=False)
  valid: bool                             # must load
  names: tuple[str, ...] = ()             # rejected: the message names one of these ("a&b": both)
  check: Callable | None = dataclasses.field(default=None, repr=False)  # loaded: extra checks
  same_values: bool = True                # loaded: params equal the base model's


def _norm(name):
  return name.removeprefix("bert.")


def _rewrite(d, fn, fname="model.safetensors"):
  t = load_file(str(d / fname))
  t = fn(t)
  save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, str(d / fname),
            metadata={"format": "pt"})


def _edit_config(d, fn):
  c = json.loads((d / "config.json").read_text())
  c = fn(c)
  (d / "config.json").write_text(json.dumps(c))


def _hf_shape(name):
  """Shape of a BertForMaskedLM tensor (HF layout: Linear weights are (out, in))."""
  s = name.removeprefix("bert.")
  if s in ("embeddings.word_embeddings.weight",):
    return (V, D)
  if s == "embeddings.position_embeddings.weight":
    return (MAX_POS, D)
  if s == "embeddings.token_type_embeddings.weight":
    return (2, D)
  if s == "cls.predictions.bias":
    return (V,)
  if s.endswith("intermediate.dense.weight"):
    return (F, D)
  if s.endswith("intermediate.dense.bias"):
    return (F,)
  if re.search(r"layer\.\d+\.output\.dense\.weight$", s):
    return (D, F)
  if s.endswith("weight") and "LayerNorm" not in s:
    return (D, D)
  return (D,)


# Raw tensor names of the base checkpoint (BertForMaskedLM: bert.* and the cls.predictions head),
# with their shapes; the fixture checks the saved file has exactly these.
BASE_NAMES = (["bert.embeddings." + n for n in (
    "word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
    "LayerNorm.weight", "LayerNorm.bias")] +
    [f"bert.encoder.layer.{i}.{m}.{w}" for i in range(LAYERS) for m in (
        "attention.self.query", "attention.self.key", "attention.self.value",
        "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
        "output.dense", "output.LayerNorm") for w in ("weight", "bias")] +
    ["cls.predictions." + n for n in (
        "bias", "transform.dense.weight", "transform.dense.bias", "transform.LayerNorm.weight",
        "transform.LayerNorm.bias")])
BASE_SHAPES = {n: _hf_shape(n) for n in BASE_NAMES}
HEAD = [n for n in BASE_NAMES if n.startswith("cls.")]
LAST_LAYER = [n for n in BASE_NAMES if n.startswith(f"bert.encoder.layer.{LAYERS - 1}.")]


# ---- weights --------------------------------------------------------------------------------


@st.composite
def missing_tensors(draw):
  whole_head = draw(st.booleans()) and draw(st.booleans())
  gone = HEAD if whole_head else draw(st.lists(st.sampled_from(BASE_NAMES), min_size=1,
                                               max_size=8, unique=True))
  valid = sorted(gone) == sorted(HEAD)  # a checkpoint without an MLM head is a plain encoder
  return Case("hf dir: missing tensors", f"delete {gone}",
              lambda d: _rewrite(d, lambda t: {k: v for k, v in t.items() if k not in gone}),
              valid, tuple(_norm(g) for g in gone) + ("num_hidden_layers",),
              check=(lambda m: m.mlm_head is None) if valid else None)


def _renamed(name, how):
  if how == "drop prefix":  # bert.x -> x: HF loads both
    return name.removeprefix("bert.")
  if how == "model. prefix":
    return "model." + name.removeprefix("bert.")
  if how == "tf layernorm":  # LayerNorm.weight/bias -> gamma/beta (TF-era names)
    return re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma",
                  re.sub(r"LayerNorm\.bias$", "LayerNorm.beta", name))
  if how == "other layer":
    return re.sub(r"layer\.\d+\.", "layer.7.", name) if ".layer." in name else name + ".7"
  if how == "kernel":
    return re.sub(r"weight$", "kernel", name) if name.endswith("weight") else name + "_"
  if how == "case":
    return name.upper()
  return name + how  # a suffix


def _same_weight(a, b):
  """Whether HF checkpoints name the same weight with a and b (prefix, TF LayerNorm names)."""
  n = lambda x: re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(
      r"LayerNorm\.beta$", "LayerNorm.bias", re.sub(r"^(bert|model)\.", "", x)))
  return n(a) == n(b)


@st.composite
def renamed_tensors(draw):
  picked = draw(st.lists(st.sampled_from(BASE_NAMES), min_size=1, max_size=4, unique=True))
  hows = [draw(st.sampled_from(["drop prefix", "model. prefix", "tf layernorm", "other layer",
                                "kernel", "case", ".x", "_old", "~"])) for _ in picked]
  renames = {n: _renamed(n, h) for n, h in zip(picked, hows)}
  renames = {n: r for n, r in renames.items() if r != n} or {picked[0]: picked[0] + ".x"}
  valid = all(_same_weight(n, r) for n, r in renames.items())

  def apply(d):
    _rewrite(d, lambda t: {renames.get(k, k): v for k, v in t.items()})

  return Case("hf dir: renamed tensors", f"rename {renames}", apply, valid,
              tuple(_norm(n) for n in renames) + ("num_hidden_layers",))


@st.composite
def reshaped_tensor(draw):
  name = draw(st.sampled_from(BASE_NAMES))
  shape = list(BASE_SHAPES[name])
  how = draw(st.sampled_from(["grow", "shrink", "add dim", "drop dim", "transpose", "scalar"]))
  if how == "grow":
    i = draw(st.integers(0, len(shape) - 1))
    shape[i] += draw(st.integers(1, 5))
  elif how == "shrink":
    i = draw(st.integers(0, len(shape) - 1))
    shape[i] = draw(st.integers(1, shape[i] - 1)) if shape[i] > 1 else shape[i] + 1
  elif how == "add dim":
    shape.insert(draw(st.integers(0, len(shape))), 1)
  elif how == "drop dim":
    shape = shape[:-1] if len(shape) > 1 else [1, shape[0]]
  elif how == "transpose":
    shape = shape[::-1] if len(set(shape)) > 1 else shape + [1]
  else:
    shape = []
  shape = tuple(shape)

  def apply(d):
    _rewrite(d, lambda t: {**t, name: np.resize(t[name], shape).astype(t[name].dtype)})

  return Case("hf dir: tensor shape", f"{name} {how} -> {shape}", apply, False, (_norm(name),))


_FLOAT_DTYPES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float64": np.float64}
_BAD_DTYPES = {"int8": np.int8, "int32": np.int32, "int64": np.int64, "uint8": np.uint8,
               "bool": np.bool_}


@st.composite
def retyped_tensors(draw):
  picked = draw(st.lists(st.sampled_from(BASE_NAMES), min_size=1, max_size=6, unique=True))
  every = draw(st.booleans()) and draw(st.booleans())  # sometimes the whole checkpoint
  if every:
    picked = BASE_NAMES
  dts = {n: draw(st.sampled_from(sorted(_FLOAT_DTYPES) + sorted(_BAD_DTYPES)))
         for n in picked}
  if every:  # a half-precision checkpoint, as `model.half().save_pretrained()` writes
    dts = dict.fromkeys(picked, draw(st.sampled_from(sorted(_FLOAT_DTYPES))))
  valid = all(t in _FLOAT_DTYPES for t in dts.values())
  all_dt = {**_FLOAT_DTYPES, **_BAD_DTYPES}

  def apply(d):
    _rewrite(d, lambda t: {k: (v.astype(all_dt[dts[k]]) if k in dts else v)
                           for k, v in t.items()})

  bad = tuple(_norm(n) for n, t in dts.items() if t in _BAD_DTYPES)
  label = f"all tensors -> {dts[picked[0]]}" if every else f"dtypes {dts}"
  return Case("hf dir: tensor dtype", label, apply, valid, bad, same_values=False)


@st.composite
def extra_tensors(draw):
  kind = draw(st.sampled_from(["pooler", "nsp head", "decoder", "position_ids", "junk",
                               "pooler bad shape", "half pooler", "extra layer"]))
  rng = np.random.default_rng(draw(st.integers(0, 2**16)))
  f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
  add, valid, names, check = {}, True, (), None
  if kind == "pooler":
    add = {"bert.pooler.dense.weight": f32(D, D), "bert.pooler.dense.bias": f32(D)}
    check = lambda m: np.array_equal(m.params["pooler"]["kernel"],
                                     add["bert.pooler.dense.weight"].T)
  elif kind == "nsp head":
    add = {"cls.seq_relationship.weight": f32(2, D), "cls.seq_relationship.bias": f32(2)}
  elif kind == "decoder":
    add = {"cls.predictions.decoder.weight": f32(V, D), "cls.predictions.decoder.bias": f32(V)}
  elif kind == "position_ids":
    add = {"bert.embeddings.position_ids": np.arange(MAX_POS, dtype=np.int64)[None]}
  elif kind == "junk":
    name = draw(st.from_regex(r"[a-z_]{1,8}(\.[a-z_0-9]{1,8}){0,3}", fullmatch=True))
    name = name if not name.startswith(("bert", "model", "encoder", "embeddings")) else "x" + name
    dims = draw(st.lists(st.integers(1, 6), max_size=3))
    add = {name: f32(*dims).astype(draw(st.sampled_from([np.float32, np.int64, np.uint8])))}
  elif kind == "pooler bad shape":
    add = {"bert.pooler.dense.weight": f32(D, D + 1), "bert.pooler.dense.bias": f32(D)}
    valid, names = False, ("pooler.dense.weight",)
  elif kind == "half pooler":
    which = draw(st.sampled_from(["weight", "bias"]))
    add = {f"bert.pooler.dense.{which}": f32(D, D) if which == "weight" else f32(D)}
    valid, names = False, ("pooler",)
  else:  # a layer past num_hidden_layers: config.json and weights disagree
    src = draw(st.sampled_from(LAST_LAYER))
    add = {src.replace(f"layer.{LAYERS - 1}.", f"layer.{LAYERS}."): f32(*BASE_SHAPES[src])}
    valid, names = False, ("num_hidden_layers",)

  return Case("hf dir: extra tensors", f"add {kind} {sorted(add)}",
              lambda d: _rewrite(d, lambda t: {**t, **add}), valid, names, check=check)


@st.composite
def truncated_weights(draw):
  frac = draw(st.floats(0.0, 1.0, exclude_max=True))

  def apply(d):
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[:int(frac * len(data))])

  return Case("hf dir: truncated model.safetensors", f"cut at {frac:.4f} of the file", apply,
              False, ("model.safetensors",))


@st.composite
def random_weights(draw):
  how = draw(st.sampled_from(["bytes", "header"]))
  if how == "bytes":
    data = draw(st.binary(max_size=4096))
  else:  # a plausible length prefix and JSON header over random data
    entry = st.fixed_dictionaries({
        "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "BOOL", "XX", "", "F8_E4M3"]),
        "shape": st.lists(st.integers(-2, 40), max_size=3),
        "data_offsets": st.lists(st.integers(-4, 5000), min_size=0, max_size=3)})
    header = draw(st.dictionaries(st.sampled_from(BASE_NAMES + ["__metadata__", "x"]), entry,
                                  max_size=3))
    hb = json.dumps(header).encode()
    data = len(hb).to_bytes(8, "little") + hb + draw(st.binary(max_size=2048))

  def apply(d):
    (d / "model.safetensors").write_bytes(data)

  return Case("hf dir: random bytes as model.safetensors", f"{how}: {data[:40]!r}...", apply,
              False, ("model.safetensors",))


@st.composite
def no_weights(draw):
  junk = draw(st.lists(st.sampled_from(["tf_model.h5", "flax_model.msgpack", "model.bin",
                                        "model.ckpt.index", "weights.safetensors"]),
                       unique=True, max_size=3))

  def apply(d):
    (d / "model.safetensors").unlink()
    for j in junk:
      (d / j).write_bytes(b"\0" * 16)

  return Case("hf dir: no weights file", f"no model.safetensors/pytorch_model.bin; {junk}", apply,
              False, ("model.safetensors",))


@st.composite
def torch_bin(draw):
  how = draw(st.sampled_from(["state dict", "fp16 state dict", "bf16 state dict", "random bytes",
                              "truncated", "not a dict", "empty"]))
  cut = draw(st.floats(0.0, 1.0, exclude_max=True))
  data = draw(st.binary(max_size=2048))

  def apply(d):
    sd = {k: torch.from_numpy(v.copy()) for k, v in load_file(str(d / "model.safetensors")).items()}
    (d / "model.safetensors").unlink()
    pt = d / "pytorch_model.bin"
    if how in ("state dict", "fp16 state dict", "bf16 state dict", "truncated"):
      dt = {"fp16 state dict": torch.float16, "bf16 state dict": torch.bfloat16}.get(how)
      torch.save({k: v.to(dt) if dt else v for k, v in sd.items()}, str(pt))
      if how == "truncated":
        b = pt.read_bytes()
        pt.write_bytes(b[:int(cut * len(b))])
    elif how == "not a dict":
      torch.save(list(sd.values()), str(pt))
    elif how == "empty":
      pt.write_bytes(b"")
    else:
      pt.write_bytes(data)

  valid = how.endswith("state dict")
  return Case("hf dir: pytorch_model.bin", how, apply, valid, ("pytorch_model.bin",),
              same_values=how == "state dict")


@st.composite
def sharded(draw):
  how = draw(st.sampled_from(["valid", "shard missing", "index not json", "no weight_map",
                              "weight_map a list", "shard truncated"]))
  split = draw(st.integers(1, len(BASE_NAMES) - 1))

  def apply(d):
    t = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    names = sorted(t)
    shards = {"model-00001-of-00002.safetensors": names[:split],
              "model-00002-of-00002.safetensors": names[split:]}
    for f, ns in shards.items():
      save_file({n: t[n] for n in ns}, str(d / f), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {n: f for f, ns in shards.items() for n in ns}}
    if how == "shard missing":
      (d / "model-00002-of-00002.safetensors").unlink()
    elif how == "shard truncated":
      p = d / "model-00001-of-00002.safetensors"
      p.write_bytes(p.read_bytes()[:100])
    elif how == "no weight_map":
      index.pop("weight_map")
    elif how == "weight_map a list":
      index["weight_map"] = list(index["weight_map"])
    text = json.dumps(index)
    (d / "model.safetensors.index.json").write_text(text[:len(text) // 2] if how ==
                                                    "index not json" else text)

  names = {"shard missing": ("model-00002-of-00002.safetensors",),
           "shard truncated": ("model-00001-of-00002.safetensors",)}.get(
               how, ("model.safetensors.index.json",))
  return Case("hf dir: sharded checkpoint", f"{how} (split at {split})", apply, how == "valid",
              names)


WEIGHT_CASES = [missing_tensors(), renamed_tensors(), reshaped_tensor(), retyped_tensors(),
                extra_tensors(), truncated_weights(), random_weights(), no_weights(), torch_bin(),
                sharded()]


# ---- config.json ----------------------------------------------------------------------------

REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size")
INT_KEYS = REQUIRED + ("max_position_embeddings", "type_vocab_size", "pad_token_id")
FLOAT_KEYS = ("layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob",
              "initializer_range")


@st.composite
def config_missing(draw):
  how = draw(st.sampled_from(["file", "directory"]))

  def apply(d):
    (d / "config.json").unlink()
    if how == "directory":
      (d / "config.json").mkdir()

  return Case("hf dir: config.json missing", how, apply, False, ("config.json",))


@st.composite
def config_not_json(draw):
  how = draw(st.sampled_from(["text", "bytes", "truncated"]))
  if how == "text":
    data = draw(st.text(max_size=200)).encode()
  elif how == "bytes":
    data = draw(st.binary(max_size=200))
  else:
    data = None
  cut = draw(st.floats(0.0, 1.0, exclude_max=True))

  def is_json(b):
    try:
      json.loads(b.decode("utf-8"))
      return True
    except (ValueError, UnicodeDecodeError):
      return False

  def apply(d):
    nonlocal data
    if data is None:
      text = (d / "config.json").read_text().rstrip()
      data = text[:int(cut * len(text))].encode()
    if is_json(data):  # e.g. "1" or "" stripped to a number: make it invalid
      data = b"{" + data
    (d / "config.json").write_bytes(data)

  return Case("hf dir: config.json not JSON", f"{how} {data!r}"[:120], apply, False,
              ("config.json",))


@st.composite
def config_not_object(draw):
  value = draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=10),
                         st.none(), st.booleans(), st.floats(allow_nan=False)))
  return Case("hf dir: config.json not an object", repr(value),
              lambda d: (d / "config.json").write_text(json.dumps(value)), False,
              ("config.json",))


@st.composite
def config_missing_keys(draw):
  keys = draw(st.lists(st.sampled_from(REQUIRED + ("model_type", "max_position_embeddings",
                                                   "type_vocab_size", "pad_token_id",
                                                   "hidden_act", "layer_norm_eps",
                                                   "hidden_dropout_prob")),
                       min_size=1, max_size=4, unique=True))
  # Defaults cover the optional keys; max_position_embeddings defaults to 512, not this 64.
  fatal = [k for k in keys if k in REQUIRED + ("model_type", "max_position_embeddings")]
  names = tuple(fatal) + (("position_embeddings&max_position_embeddings=",)
                          if "max_position_embeddings" in fatal else ())
  return Case("hf dir: config.json missing keys", f"drop {keys}",
              lambda d: _edit_config(d, lambda c: {k: v for k, v in c.items() if k not in keys}),
              not fatal, names)


_REAL = {"pad_token_id": 0, "max_position_embeddings": MAX_POS, "type_vocab_size": 2,
         "vocab_size": V, "hidden_size": D, "num_hidden_layers": LAYERS,
         "num_attention_heads": 2, "intermediate_size": F}  # the base config.json's values


@st.composite
def config_wrong_type(draw):
  key = draw(st.sampled_from(INT_KEYS + FLOAT_KEYS + ("hidden_act", "model_type")))
  if key in INT_KEYS:
    real = _REAL[key]
    value = draw(st.sampled_from([str(real), float(real), real + 0.5, True, False, [real],
                                  {"value": real}]
                                 + ([] if key == "pad_token_id" else [None])))
  elif key in FLOAT_KEYS:
    value = draw(st.sampled_from(["0.1", True, [0.1], {"p": 0.1}, "1e-12"]))
  else:
    value = draw(st.sampled_from([1, ["gelu"], None, {"name": "bert"}, 2.5]))
  return Case("hf dir: config.json wrong types", f"{key}={value!r}",
              lambda d: _edit_config(d, lambda c: {**c, key: value}), False, (key,))


@st.composite
def config_bad_value(draw):
  key = draw(st.sampled_from(INT_KEYS + FLOAT_KEYS + ("hidden_act", "position_embedding_type")))
  valid = False
  names = (key,)
  if key in INT_KEYS:
    value = draw(st.one_of(st.integers(-2**40, 0), st.integers(2**31, 2**62),
                           st.sampled_from([V + 1, D * 2, 3, 10**9])).filter(
                               lambda v: v != _REAL[key]))
    if key == "pad_token_id":
      value = draw(st.one_of(st.integers(-10**6, -1), st.integers(V, 10**9),
                             st.integers(0, V - 1)))
      valid = 0 <= value < V  # BERT does not use pad_token_id in its weights
  elif key in FLOAT_KEYS:
    hi = None if key in ("layer_norm_eps", "initializer_range") else 1.0
    good = st.floats(0.0, hi if hi else 1.0, exclude_max=True)
    value = draw(st.one_of(good, st.floats(max_value=-1e-9), st.sampled_from(
        [float("nan"), float("inf"), float("-inf")] + ([1.0, 1.5] if hi else []))))
    valid = np.isfinite(value) and value >= 0 and (hi is None or value < hi)
  elif key == "hidden_act":
    value = draw(st.one_of(st.sampled_from(["relu", "gelu_new", "swish_fancy", "GELU", "tanh"]),
                           st.text(max_size=8)))
    valid = value in enc.ACTIVATIONS
  else:
    value = draw(st.sampled_from(["relative_key", "relative_key_query", "rotary", ""]))
  check = None
  if valid:
    check = lambda m: _cfg_value(m.cfg, key) == value
  return Case("hf dir: config.json bad values", f"{key}={value!r}",
              lambda d: _edit_config(d, lambda c: {**c, key: value}), bool(valid), names,
              check=check)


def _cfg_value(cfg, key):
  return getattr(cfg, {"pad_token_id": "pad_token_id", "hidden_act": "activation",
                       "layer_norm_eps": "layer_norm_eps", "hidden_dropout_prob": "hidden_dropout",
                       "attention_probs_dropout_prob": "attention_dropout",
                       "initializer_range": "initializer_range"}[key])


@st.composite
def heads_vs_hidden(draw):
  which = draw(st.sampled_from(["heads", "hidden"]))
  if which == "heads":
    n = draw(st.integers(1, 40))
    valid = D % n == 0  # the head count does not change any tensor's shape
    return Case("hf dir: num_attention_heads vs hidden_size", f"num_attention_heads={n}",
                lambda d: _edit_config(d, lambda c: {**c, "num_attention_heads": n}), valid,
                ("num_attention_heads",),
                check=(lambda m: m.cfg.num_heads == n and m.cfg.head_dim == D // n))
  h = draw(st.integers(1, 200).filter(lambda h: h % 2))
  return Case("hf dir: num_attention_heads vs hidden_size", f"hidden_size={h} (2 heads)",
              lambda d: _edit_config(d, lambda c: {**c, "hidden_size": h}), False,
              ("num_attention_heads",))


@st.composite
def unknown_model_type(draw):
  mt = draw(st.one_of(st.sampled_from(["gpt2", "t5", "distilbert", "BERT", "Bert", "albert",
                                       "deberta-v2", "electra", " bert", "bert "]),
                      st.text(max_size=12)).filter(lambda s: s not in hf.SUPPORTED))
  return Case("hf dir: unknown model_type", repr(mt),
              lambda d: _edit_config(d, lambda c: {**c, "model_type": mt}), False,
              ("model_type",))


@st.composite
def vocab_vs_embedding(draw):
  k = draw(st.integers(-V + 1, 3 * V).filter(lambda k: k != 0))
  side = draw(st.sampled_from(["config", "tensors"]))

  def apply(d):
    if side == "config":
      _edit_config(d, lambda c: {**c, "vocab_size": V + k})
    else:
      _rewrite(d, lambda t: {**t, **{n: np.resize(t[n], (V + k, *t[n].shape[1:])) for n in (
          "bert.embeddings.word_embeddings.weight", "cls.predictions.bias")}})

  return Case("hf dir: config vocab_size vs embedding", f"{side}: {V} -> {V + k}", apply, False,
              ("word_embeddings&vocab_size=",))


CONFIG_CASES = [config_missing(), config_not_json(), config_not_object(), config_missing_keys(),
                config_wrong_type(), config_bad_value(), heads_vs_hidden(), unknown_model_type(),
                vocab_vs_embedding()]


# ---- tokenizer ------------------------------------------------------------------------------


def _tok_json(d):
  return json.loads((d / "tokenizer.json").read_text())


@st.composite
def tokenizer_vocab(draw):
  how = draw(st.sampled_from(["tokenizer.json", "vocab.txt", "model resized"]))
  k = draw(st.integers(-40, 40))
  if how == "model resized" and k == 0:
    k = 1
  new = [f"w{i}" for i in range(max(k, 0))]

  def apply(d):
    words = VOCAB[:V + k] if k < 0 else VOCAB + new
    if how == "tokenizer.json":
      j = _tok_json(d)
      if k == 0:  # same size, other words: nothing can tell, it must load
        words = SPECIALS + [w + "x" for w in VOCAB[len(SPECIALS):]]
      j["model"]["vocab"] = {w: i for i, w in enumerate(words)}
      (d / "tokenizer.json").write_text(json.dumps(j))
    elif how == "vocab.txt":
      (d / "tokenizer.json").unlink()
      (d / "vocab.txt").write_text("\n".join(words) + "\n")
    else:
      n = V + k
      _edit_config(d, lambda c: {**c, "vocab_size": n})
      _rewrite(d, lambda t: {**t, **{m: np.resize(t[m], (n, *t[m].shape[1:])) for m in (
          "bert.embeddings.word_embeddings.weight", "cls.predictions.bias")}})

  return Case("hf dir: tokenizer vocab vs model", f"{how}: {k:+d} tokens", apply, k == 0,
              ("vocab_size",))


@st.composite
def tokenizer_missing(draw):
  gone = draw(st.lists(st.sampled_from(TOKENIZER_FILES), min_size=1, unique=True))
  # tokenizer_config.json alone is optional (tokenizer.json holds the whole pipeline).
  return Case("hf dir: tokenizer files missing", f"delete {gone}",
              lambda d: [(d / g).unlink() for g in gone], gone == ["tokenizer_config.json"],
              ("tokenizer",))


@st.composite
def tokenizer_corrupt(draw):
  which = draw(st.sampled_from(TOKENIZER_FILES))
  how = draw(st.sampled_from(["truncated", "bytes", "list", "empty object", "edit"]))
  cut = draw(st.floats(0.0, 1.0, exclude_max=True))
  data = draw(st.binary(min_size=1, max_size=300))
  # What transformers reads the same way is valid: tokenizer.json holds the whole pipeline, so
  # an empty tokenizer_config.json or an unknown tokenizer_class loads as before, and a
  # WordPiece vocab given as a list (ids in order) is the same vocab.
  edits = {
      "tokenizer.json": {"no model": False, "vocab as list": True, "no added_tokens": False,
                         "model type unknown": False},
      "tokenizer_config.json": {"unknown tokenizer_class": True, "tokenizer_class a list": False,
                                "mask_token null": False, "mask_token not in vocab": False}}
  edit = draw(st.sampled_from(sorted(edits[which])))
  valid = {"empty object": which == "tokenizer_config.json",
           "edit": edits[which][edit]}.get(how, False)

  def apply(d):
    p = d / which
    if how == "truncated":
      text = p.read_text().rstrip()
      p.write_text(text[:int(cut * (len(text) - 1))])
    elif how == "bytes":
      p.write_bytes(b"\xff" + data)
    elif how == "list":
      p.write_text("[1, 2, 3]")
    elif how == "empty object":
      p.write_text("{}")
    else:
      j = json.loads(p.read_text())
      if edit == "no model":
        j.pop("model")
      elif edit == "vocab as list":
        j["model"]["vocab"] = list(j["model"]["vocab"])
      elif edit == "no added_tokens":
        j.pop("added_tokens")
      elif edit == "model type unknown":
        j["model"]["type"] = "NoSuchModel"
      elif edit == "unknown tokenizer_class":
        j["tokenizer_class"] = "NoSuchTokenizer"
      elif edit == "tokenizer_class a list":
        j["tokenizer_class"] = ["BertTokenizer"]
      elif edit == "mask_token null":
        j["mask_token"] = None
      else:  # transformers appends it as token 100: one id more than the embedding has rows
        j["mask_token"] = "[NOPE]"
      p.write_text(json.dumps(j))

  label = f"{which}: {how}" + (f" ({edit})" if how == "edit" else "")
  # Unreadable JSON is named by file; the rest by what is wrong with the tokenizer.
  names = (which,) if how in ("truncated", "bytes", "list") else ("tokenizer", "vocab_size")
  return Case("hf dir: tokenizer file corrupt", label, apply, valid, names)


TOKENIZER_CASES = [tokenizer_vocab(), tokenizer_missing(), tokenizer_corrupt()]


def _ids(strategies):
  return [repr(s).split("(")[0] for s in strategies]


# ---------------------------------------------------------------------------------------------
# Checks


def _assert_clear(err, d, case):
  msg = str(err)
  assert isinstance(err, ClowlabError)
  assert msg.startswith("clowlab: "), msg
  assert str(d) in msg, f"{case.label}: message does not name the directory: {msg!r}"
  # names: alternatives; "a&b" needs both a and b
  assert any(all(p in msg for p in n.split("&")) for n in case.names), (
      f"{case.label}: names none of {case.names}: {msg!r}")
  rest = msg.split(". ", 1)[-1] if ". " in msg else ""
  assert _FIX.search(rest), f"{case.label}: says no fix: {msg!r}"
  assert "Traceback" not in msg and len(msg) < 2000, msg


def _assert_like_base(m, base, case):
  want = jax.tree_util.tree_map(lambda s: s.shape, enc.param_shapes(m.cfg))
  got = jax.tree_util.tree_map(lambda a: a.shape, m.params)
  assert got == want, case.label
  assert all(a.dtype == np.float32 for a in jax.tree_util.tree_leaves(m.params))
  assert (m.cfg.vocab_size, m.cfg.hidden_size, m.cfg.num_layers) == (V, D, LAYERS)
  tol = 0 if case.same_values else 1e-2
  for a, b in zip(jax.tree_util.tree_leaves(m.params["layers"]),
                  jax.tree_util.tree_leaves(base.model.params["layers"])):
    np.testing.assert_allclose(a, b, atol=tol, rtol=tol)
  np.testing.assert_allclose(m.params["embeddings"]["word"],
                             base.model.params["embeddings"]["word"], atol=tol, rtol=tol)
  if case.check is not None:
    assert case.check(m), case.label


def _init_from_cfg(d):
  c = tiny_cfg(init_from=str(d), tokenizer="")
  c.model = ml_collections.ConfigDict()  # the architecture comes from the directory
  return c


def _run(base, case, load):
  """Copies the base dir, applies the case, loads it; checks and counts the outcome."""
  d = base.copy()
  try:
    case.apply(d)
    try:
      result = load(d)
    except ClowlabError as e:
      assert not case.valid, f"{case.label}: a valid directory was refused: {e}"
      _assert_clear(e, d, case)
      fuzzlog.record(case.klass, "rejected")
      return None
    assert case.valid, f"{case.label}: an invalid directory loaded"
    fuzzlog.record(case.klass, "loaded")
    return result
  finally:
    shutil.rmtree(d.parent, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Tests


# One test per input class, so each class gets its own budget of examples.
@pytest.mark.parametrize("cases", WEIGHT_CASES, ids=_ids(WEIGHT_CASES))
@settings(max_examples=_n(16), **_SETTINGS)
@given(data=st.data())
def test_fuzzed_weights(base, cases, data):
  case = data.draw(cases, label="case")

  def load(d):
    m = hf.load_hf(d)
    _assert_like_base(m, base, case)
    ecfg, imported, _ = train.resolve_model(_init_from_cfg(d), base.tokenizer)
    assert ecfg == m.cfg and set(imported) <= {"encoder", "mlm_head"}
    return m

  _run(base, case, load)


@pytest.mark.parametrize("cases", CONFIG_CASES, ids=_ids(CONFIG_CASES))
@settings(max_examples=_n(16), **_SETTINGS)
@given(data=st.data())
def test_fuzzed_config(base, cases, data):
  case = data.draw(cases, label="case")

  def load(d):
    m = hf.load_hf(d)
    _assert_like_base(m, base, case)
    return m

  _run(base, case, load)


@pytest.mark.parametrize("cases", TOKENIZER_CASES, ids=_ids(TOKENIZER_CASES))
@settings(max_examples=_n(20), **_SETTINGS)
@given(data=st.data())
def test_fuzzed_tokenizer(base, cases, data):
  case = data.draw(cases, label="case")

  def load(d):
    tok = tokenizers.load_tokenizer(str(d))
    tokenizers.check_vocab_matches(tok, hf.load_hf(d).cfg.vocab_size, str(d))
    ecfg, _, _ = train.resolve_model(_init_from_cfg(d), tok)
    assert ecfg.vocab_size == tok.vocab_size == V
    assert tok.encode(["the man"], max_len=8)["input_ids"][0][0] == 2  # [CLS]
    return tok

  _run(base, case, load)


class _ReachedJit(Exception):
  """train.train got past loading to its first jax.jit: the directory was accepted."""


def _no_jit(*a, **k):
  raise _ReachedJit


@settings(max_examples=_n(40), **_SETTINGS)
@given(case=st.sampled_from(WEIGHT_CASES + CONFIG_CASES + TOKENIZER_CASES).flatmap(
    lambda cases: cases))
def test_fuzzed_init_from_through_train(base, case):
  """The user path: --config.init_from=<dir>. A bad directory is refused before any jit."""
  case = dataclasses.replace(case, klass=case.klass.replace("hf dir:", "hf dir via train:"))

  def load(d):
    with tempfile.TemporaryDirectory(dir=base.root) as w, mock.patch.object(jax, "jit", _no_jit):
      try:
        train.train(_init_from_cfg(d), w)
      except _ReachedJit:
        return "loaded"
    raise AssertionError("train.train finished without a jit")

  _run(base, case, load)
