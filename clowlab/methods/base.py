"""What a method is: model heads + loss + data, as pure functions the engine calls.

The engine (train.py, sharding.py, checkpoint.py) never names a method; a method never touches
meshes or checkpoints. Params are `{"encoder": <encoder tree>, **heads}`; method state (an
InfoXLM queue, a momentum encoder) is a separate pytree that is sharded and checkpointed with
the train state but not differentiated.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from clowlab.models.encoder import EncoderConfig

Params = dict[str, Any]
Batch = dict[str, Any]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class DataContext:
  """What a method's data builder gets from the engine."""
  tokenizer: Any
  process_index: int
  process_count: int
  cache_dir: str
  # The run's params (after init_from / resume), encoder config and mesh: for data built from
  # the model, e.g. features of a frozen encoder. None where a caller has no model.
  params: Any = None
  encoder_config: EncoderConfig | None = None
  mesh: Any = None


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  # (rng, encoder config, run config) -> params of the heads (everything but "encoder").
  init_heads: Callable[[jax.Array, EncoderConfig, Any], Params]
  # (params, method_state, global batch, rng, encoder config, run config)
  #   -> (scalar loss, metrics, new method_state). Written on global arrays.
  loss: Callable[..., tuple[jax.Array, Metrics, Any]]
  # (run config, DataContext) -> a per-host batch iterator with get_state()/set_state().
  make_data: Callable[[Any, DataContext], Any]
  # (params, encoder config, run config) -> initial method state (default: none).
  init_state: Callable[[Params, EncoderConfig, Any], Any] = lambda params, ecfg, cfg: {}
  # (run config, cache dir) -> the evaluation entries {name: {"type": ..., ...}} its config
  # asks for (config.evals, when set, replaces them); evaluators/registry.py runs them. None: the
  # method has no evaluation of its own.
  evals: Callable[[Any, str], dict[str, dict]] | None = None
  # (params, masked batch, encoder config, run config) -> (cross-entropy sum, predictions,
  # correct) in evaluation mode: the MLM head the held-out "mlm" evaluator scores.
  mlm_eval: Callable[..., tuple[jax.Array, jax.Array, jax.Array]] | None = None
  # Encoder forward passes per example per step (e.g. 2 for two-view contrastive), or a function
  # of the run config: for tokens/s and MFU. 0: the step runs no encoder (cached features).
  passes_per_example: int | Callable[[Any], int] = 1
  # (params, batch {input_ids, attention_mask, token_type_ids}, encoder config, run config)
  #   -> float32 sentence vectors [B, D], evaluation mode: how the method embeds text.
  embed: Callable[..., jax.Array] | None = None
  # (params, run config) -> (JSON-able pooler config, head params) saved beside an HF export
  # so `clowlab.embed.load(dir)` embeds as the method does; None: nothing beyond the encoder.
  export_pooler: Callable[[Params, Any], tuple[dict, Params]] | None = None
  # Top-level params entries that are never trained (no gradients, no optimiser state), e.g.
  # BERT-flow's frozen encoder and the flow's fixed permutations.
  frozen: tuple[str, ...] = ()
  # (params, data iterator, encoder config, run config, mesh) -> params: a data-dependent
  # initialisation run once on a fresh start (never on resume), e.g. Glow's ActNorm from the
  # first batch. It must leave the iterator's state as it found it.
  data_init: Callable[..., Params] | None = None
  # make_data reads DataContext.params (the run's model), so the engine builds the data after
  # the model; otherwise before it, and a bad data file fails before any compile.
  data_uses_params: bool = False
  # (run config, cache dir) -> text files a from-scratch tokenizer ("spm:<vocab>") is trained on,
  # when the method builds its training text itself (default: config.data.train).
  tokenizer_text: Callable[[Any, str], list[str]] | None = None
  # (run config, encoder config) -> the global batch make_data yields, as jax.ShapeDtypeStruct:
  # what an ahead-of-time compile (clowlab.aot) lowers the step for without reading any data.
  # tests/test_aot.py checks it against make_data's real batches.
  batch_spec: Callable[[Any, EncoderConfig], Batch] | None = None


def text_spec(batch: int, seq_len: int, *, mlm: bool = False, index: bool = True) -> Batch:
  """The fields of one tokenized view (pipeline.FIELDS + attention_mask), [batch, seq_len];
  mlm: with MlmMasker's labels and weights; index: the loader's per-row record index."""
  i32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.int32)  # noqa: E731
  out = {k: i32(batch, seq_len)
         for k in ("input_ids", "attention_mask", "token_type_ids", "word_ids")}
  if mlm:
    out.update(mlm_labels=i32(batch, seq_len),
               mlm_weights=jax.ShapeDtypeStruct((batch, seq_len), jnp.float32))
  if index:
    out["index"] = i32(batch)
  return out
