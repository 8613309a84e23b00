"""2 processes x 4 CPU devices (jax.distributed on localhost, gloo) == 1 process x 8 devices."""
import json
import os
import subprocess
import sys

import numpy as np
import portpicker
import pytest

from test_train import _workdir, shared_tokenizer  # noqa: F401 - fixture
from tiny import tiny_cfg

from clowlab import train

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, shared_tokenizer):  # noqa: F811
  cfg = tiny_cfg(total_steps=2, checkpoint_every=2, **{"model.hidden_dropout": 0.0,
                                                       "model.attention_dropout": 0.0})
  single = _workdir(tmp_path, "single", shared_tokenizer)
  train.train(cfg, single)
  multi = tmp_path / "multi"
  multi.mkdir()
  port = portpicker.pick_unused_port()
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "multiprocess_worker.py"),
                             str(i), "2", str(port), str(multi), str(shared_tokenizer)],
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
  read = lambda w: [json.loads(l) for l in open(os.path.join(w, "metrics.jsonl"))]
  one, two = read(single), read(multi)
  print("1 process x 8 devices, losses:", [r["loss"] for r in one])
  print("2 processes x 4 devices, losses:", [r["loss"] for r in two])
  assert [r["step"] for r in two] == [1, 2]
  np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-5)
  np.testing.assert_allclose([r["grad_norm"] for r in two], [r["grad_norm"] for r in one],
                             rtol=1e-4)
  assert all("process" in o for o in outs)
