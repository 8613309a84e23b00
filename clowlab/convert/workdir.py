"""HF directory <-> clowlab workdir (an orbax checkpoint plus the tokenizer files)."""
from __future__ import annotations

import os
import pathlib


from clowlab import checkpoint
from clowlab import workdir as workdir_layout
from clowlab.convert import hf, loading
from clowlab.convert.loading import POOLER_CONFIG, POOLER_WEIGHTS, flatten
from clowlab.errors import ClowlabError
from clowlab.models import encoder as enc


def _check_tokenizer(tok_dir: pathlib.Path, cfg: enc.EncoderConfig, source: str) -> None:
  from clowlab.data import tokenizers  # noqa: PLC0415 - keeps `import clowlab.convert` light
  tok = tokenizers.load_tokenizer(str(tok_dir))
  tokenizers.check_vocab_matches(tok, cfg.vocab_size, source)


def import_to_workdir(hf_dir: str | os.PathLike, workdir: str | os.PathLike) -> hf.HFModel:
  """Writes the HF model in `hf_dir` as step 0 of a clowlab checkpoint in `workdir`."""
  if checkpoint.latest_step(workdir) is not None:
    raise ClowlabError(f"clowlab: {checkpoint.checkpoint_dir(workdir)} already holds "
                       "checkpoints; import into a new --workdir (clowlab never overwrites one).")
  model = hf.load_hf(hf_dir)
  tok_dir = pathlib.Path(workdir) / workdir_layout.TOKENIZER_SUBDIR
  if hf.copy_tokenizer_files(hf_dir, tok_dir):
    _check_tokenizer(tok_dir, model.cfg, str(pathlib.Path(hf_dir) / "config.json"))
  params = {"encoder": model.params}
  if model.mlm_head is not None:
    params["mlm_head"] = model.mlm_head
  meta = {"encoder_config": model.cfg.to_dict(), "source": str(pathlib.Path(hf_dir).absolute()),
          "tokenizer": workdir_layout.TOKENIZER_SUBDIR if tok_dir.is_dir() else None,
          "notes": model.notes}
  checkpoint.save(workdir, 0, params, meta)
  return model


def load_workdir(workdir: str | os.PathLike, step: int | None = None):
  """(params as numpy, EncoderConfig, meta, step) of a clowlab workdir's checkpoint
  (clowlab.loading.load_weights)."""
  w = loading.load_weights(workdir, step, workdir_only=True)
  return w.params, w.ecfg, w.meta, w.step


def export_workdir(workdir: str | os.PathLike, out_dir: str | os.PathLike, *,
                   step: int | None = None, with_mlm_head: bool = False,
                   overwrite: bool = False) -> str:
  """Writes a workdir's checkpoint (latest by default) as an HF model directory."""
  params, cfg, meta, step = load_workdir(workdir, step)
  head = None
  if with_mlm_head:
    if "mlm_head" not in params:
      raise ClowlabError(f"clowlab: the checkpoint at step {step} in {workdir} has no MLM head; "
                         "export without --with_mlm_head.")
    head = params["mlm_head"]
  tok = meta.get("tokenizer")
  tok_dir = pathlib.Path(workdir) / tok if tok else None
  return hf.save_hf(out_dir, params["encoder"], cfg, mlm_head=head, tokenizer_dir=tok_dir,
                    overwrite=overwrite, extra_files=sentence_files(params, cfg, meta))


def sentence_files(params, cfg: enc.EncoderConfig, meta: dict) -> dict[str, bytes]:
  """Files that make an export a sentence-embedding model.

  - sentence-transformers modules (modules.json, 1_Pooling/config.json): the encoder with the
    parameter-free pooling closest to the method's (CLS for CLS-based poolers, else mean), so
    `SentenceTransformer(dir)` works;
  - for a method with its own pooler/head (SimCSE's MLP, layer-wise attention): its config and
    weights (clowlab_pooler.json / .safetensors), which `clowlab.embed.load(dir)` uses to embed
    exactly as the method evaluates.
  """
  import json  # noqa: PLC0415

  import ml_collections  # noqa: PLC0415
  from safetensors.numpy import save  # noqa: PLC0415

  from clowlab import methods  # noqa: PLC0415
  run_cfg = meta.get("config") or {}
  name = run_cfg.get("method")
  method = methods.METHODS.get(name) if name else None
  pooler = (run_cfg.get("contrastive") or {}).get("pooler", "mean")
  cls_like = pooler in ("cls", "cls_before_pooler", "layer_attention")
  st_pool = {"word_embedding_dimension": cfg.hidden_size, "pooling_mode_cls_token": cls_like,
             "pooling_mode_mean_tokens": not cls_like, "pooling_mode_max_tokens": False,
             "pooling_mode_mean_sqrt_len_tokens": False}
  modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling",
              "type": "sentence_transformers.models.Pooling"}]
  max_len = int(run_cfg.get("seq_len") or 128)
  files = {"modules.json": json.dumps(modules, indent=2).encode(),
           "1_Pooling/config.json": json.dumps(st_pool, indent=2).encode(),
           "sentence_bert_config.json": json.dumps(
               {"max_seq_length": min(max_len, cfg.max_position_embeddings - cfg.position_offset),
                "do_lower_case": False}, indent=2).encode()}
  if method is not None and method.export_pooler is not None:
    pcfg, head = method.export_pooler(params, ml_collections.ConfigDict(run_cfg))
    files[POOLER_CONFIG] = json.dumps(pcfg, indent=2, sort_keys=True).encode()
    if head:
      files[POOLER_WEIGHTS] = save(flatten(head))
  return files
