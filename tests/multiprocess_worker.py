"""One process of a multi-process CPU run (used by test_multiprocess.py).

usage: python tests/multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT WORKDIR TOKENIZER_DIR
                                          [METHOD [CACHE_DIR]]
Each process has 4 CPU devices; together they form one 8-device mesh. METHOD: mlm (default; the
tiny MLM config) or infoxlm (tests/test_infoxlm.py's tiny config: MMLM + TLM + XLCo and its
queue, sharded over both processes' devices).
"""
import os
import shutil
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tiny import tiny_cfg  # noqa: E402

from clowlab import train  # noqa: E402


def main():
  pid, n, port, workdir, tok_dir = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                    sys.argv[4], sys.argv[5])
  method = sys.argv[6] if len(sys.argv) > 6 else "mlm"
  no_dropout = {"model.hidden_dropout": 0.0, "model.attention_dropout": 0.0}
  if method == "infoxlm":
    from test_infoxlm import _cfg  # noqa: PLC0415
    cfg = _cfg(total_steps=2, checkpoint_every=2, cache_dir=sys.argv[7], **no_dropout)
  else:
    cfg = tiny_cfg(total_steps=2, checkpoint_every=2, **no_dropout)
  cfg.distributed.enabled = True
  cfg.distributed.coordinator_address = f"127.0.0.1:{port}"
  cfg.distributed.num_processes = n
  cfg.distributed.process_id = pid
  if pid == 0 and not os.path.exists(os.path.join(workdir, "tokenizer")):
    shutil.copytree(tok_dir, os.path.join(workdir, "tokenizer"))
  out = train.train(cfg, workdir)
  assert jax.process_count() == n and jax.device_count() == 8, (jax.process_count(),
                                                                jax.device_count())
  print(f"process {pid}: loss {out['metrics']['loss']!r}", flush=True)


if __name__ == "__main__":
  main()
