"""2 processes x 4 CPU devices (jax.distributed on localhost, gloo) == 1 process x 8 devices:
the MLM step, and InfoXLM with its key queue sharded over both processes."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import portpicker
import pytest

from test_train import _workdir, shared_tokenizer  # noqa: F401 - fixture
from tiny import tiny_cfg

from clowlab import checkpoint, train
from clowlab.methods import infoxlm

HERE = os.path.dirname(os.path.abspath(__file__))


def _two_processes(multi, tok_dir, *extra):
  port = portpicker.pick_unused_port()
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "multiprocess_worker.py"),
                             str(i), "2", str(port), str(multi), str(tok_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
           for i in range(2)]
  outs = []
  for p in procs:
    try:
      out, _ = p.communicate(timeout=600)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
    outs.append(out)
    assert p.returncode == 0, out[-3000:]
  return outs


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, shared_tokenizer):  # noqa: F811
  cfg = tiny_cfg(total_steps=2, checkpoint_every=2, **{"model.hidden_dropout": 0.0,
                                                       "model.attention_dropout": 0.0})
  single = _workdir(tmp_path, "single", shared_tokenizer)
  train.train(cfg, single)
  multi = tmp_path / "multi"
  multi.mkdir()
  outs = _two_processes(multi, shared_tokenizer)
  read = lambda w: [json.loads(l) for l in open(os.path.join(w, "metrics.jsonl"))]
  one, two = read(single), read(multi)
  print("1 process x 8 devices, losses:", [r["loss"] for r in one])
  print("2 processes x 4 devices, losses:", [r["loss"] for r in two])
  assert [r["step"] for r in two] == [1, 2]
  np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-5)
  np.testing.assert_allclose([r["grad_norm"] for r in two], [r["grad_norm"] for r in one],
                             rtol=1e-4)
  assert all("process" in o for o in outs)


@pytest.mark.slow
def test_infoxlm_queue_across_two_processes_matches_one(tmp_path):
  """MMLM + TLM + XLCo with the key queue sharded over 2 processes x 4 devices == 1 x 8."""
  from test_infoxlm import _cfg  # noqa: PLC0415 - its tiny InfoXLM config
  cache = str(tmp_path / "cache")
  cfg = _cfg(total_steps=2, checkpoint_every=2, cache_dir=cache,
             **{"model.hidden_dropout": 0.0, "model.attention_dropout": 0.0})
  tok = tmp_path / "tok"
  train.resolve_tokenizer(cfg, str(tok), lambda: infoxlm.tokenizer_text(cfg, cache))
  single = _workdir(tmp_path, "single", tok / "tokenizer")
  out = train.train(cfg, single)
  multi = tmp_path / "multi"
  multi.mkdir()
  _two_processes(multi, tok / "tokenizer", "infoxlm", cache)
  read = lambda w: [json.loads(l) for l in open(os.path.join(w, "metrics.jsonl"))]  # noqa: E731
  one, two = read(single), read(multi)
  for k in ("loss", "xlco_loss", "tlm_loss", "mmlm_loss", "xlco_queue_fill"):
    np.testing.assert_allclose([r[k] for r in two], [r[k] for r in one], rtol=1e-5, err_msg=k)
  assert two[-1]["xlco_queue_fill"] == 16 / 64  # step 2 saw step 1's 16 keys in a queue of 64
  # The queue written by the two processes restores equal to the one-process queue.
  st = out["state"]["method_state"]["queue"]
  tgt = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), out["state"])
  with checkpoint.Manager(str(multi)) as mngr:
    r = mngr.restore(params_target=tgt["params"],
                     train_state_target={k: v for k, v in tgt.items() if k != "params"})
  q2 = r["train_state"]["method_state"]["queue"]
  np.testing.assert_allclose(np.asarray(q2["queue_QD"]), np.asarray(st["queue_QD"]), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_array_equal(np.asarray(q2["queue_Q"]), np.asarray(st["queue_Q"]))
