"""Defaults every method shares. Scripts rely on these key names."""
import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = ""
  c.mode = "train"                # train | eval | train_and_eval
  c.total_steps = 1000
  c.max_train_seconds = 0.0       # > 0: stop (saved, resumable) after this much training time
  c.batch_size = 32               # global, over all hosts and devices
  c.seq_len = 128
  c.seed = 0
  c.init_from = ""                # an HF model directory or a clowlab workdir; "" = fresh
  c.tokenizer = ""                # HF dir | .model | spm:<vocab> | chars:<vocab> | "" = init_from's
  c.eval_every = 0                # 0 = only at the end (train_and_eval)
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.best_metric = ""              # e.g. "eval/stsb_spearman": also keep the best checkpoint
  # Evaluators by name: {"NAME": {"type": mlm | sts | flow_sts | tatoeba | xsts | bitext |
  # xsts_files, ...that type's keys}} (clowlab/evaluators/registry.py, docs/evaluators.md);
  # empty = the method's own evaluation from its eval.* / data.eval keys.
  c.evals = ml_collections.ConfigDict()
  c.async_checkpoint = True
  c.log_every = 10
  c.progress_bar = True
  c.max_bad_steps = 20            # consecutive non-finite steps before the run stops
  c.preemption_grace_s = 30.0     # SIGTERM: save within this many seconds, else exit 143
  c.on_save_error = "stop"        # a checkpoint cannot be written: stop | continue (retry later)
  c.grad_accum_steps = 1
  c.cache_dir = ""                # tokenized-data cache; "" = <workdir>/cache
  # Mesh: ("data", "fsdp") sizes; -1 = all remaining devices. Params are sharded over fsdp.
  c.mesh = ml_collections.ConfigDict({"data": 1, "fsdp": -1})
  c.num_devices = 0               # 0 = every device; N = the first N (single-host debugging)
  # Multi-process runs. TPU pods: enabled=True alone (jax.distributed discovers the rest). CPU/GPU
  # clusters: all of them. Typed placeholders (None until set) so --config.distributed.* works.
  c.distributed = ml_collections.ConfigDict({
      "enabled": False, "coordinator_address": config_dict.placeholder(str),
      "num_processes": config_dict.placeholder(int), "process_id": config_dict.placeholder(int),
      "cpu_collectives": ""})
  # Encoder architecture for fresh models (ignored keys come from init_from's config.json).
  c.model = ml_collections.ConfigDict()
  c.optim = ml_collections.ConfigDict({
      "lr": 1e-4, "warmup_steps": 100, "schedule": "linear", "end_lr_ratio": 0.0,
      "weight_decay": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-6, "clip_norm": 1.0,
      "groups": {}})
  c.data = ml_collections.ConfigDict()
  return c
