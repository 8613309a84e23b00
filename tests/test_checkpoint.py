"""checkpoint.Manager: keep last K plus the best, items round trip, errors."""
import jax.numpy as jnp
import numpy as np
import pytest

from clowlab import checkpoint
from clowlab import workdir as workdir_lib
from clowlab.errors import ClowlabError


def _save(m, step, score):
  m.save(step, params={"w": jnp.full((3,), float(step))}, meta={"note": "t"},
         train_state={"step": jnp.int32(step)}, data_state={"position": step},
         metrics={"eval/score": score})


def test_keeps_last_k_and_best(tmp_path):
  with checkpoint.Manager(tmp_path, max_to_keep=2, best_metric="eval/score") as m:
    for step, score in [(1, 0.1), (2, 0.9), (3, 0.2), (4, 0.3), (5, 0.4)]:
      _save(m, step, score)
    m.wait()
    assert m.all_steps() == [2, 4, 5]  # the last two, plus the best (step 2)
    r = m.restore(train_state_target={"step": jnp.int32(0)})
    assert r["step"] == 5 and r["data"] == {"position": 5}
    np.testing.assert_array_equal(r["params"]["w"], np.full((3,), 5.0))
    assert int(r["train_state"]["step"]) == 5 and r["meta"]["note"] == "t"
    assert m.read_meta(2)["format_version"] == checkpoint.FORMAT_VERSION


def test_restore_errors(tmp_path):
  with pytest.raises(ClowlabError, match="no checkpoint in"):
    checkpoint.restore(tmp_path / "none")
  checkpoint.save(tmp_path / "w", 3, {"w": jnp.ones(2)}, {"a": 1})
  with pytest.raises(ClowlabError, match=r"step 7 is not in .*available: \[3\]"):
    checkpoint.restore(tmp_path / "w", step=7)
  params, meta, step = checkpoint.restore(tmp_path / "w")
  assert step == 3 and meta["a"] == 1


def test_a_second_run_on_the_same_workdir_is_refused_and_a_killed_one_frees_it(tmp_path):
  import signal  # noqa: PLC0415
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415

  from clowlab import train  # noqa: PLC0415
  from tiny import tiny_cfg  # noqa: PLC0415
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from clowlab import workdir as workdir_lib\n"
       f"with workdir_lib.workdir_lock({str(tmp_path)!r}):\n"
       "  print('locked', flush=True); time.sleep(120)"],
      stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ClowlabError, match=rf"in use by another run \(pid {holder.pid} on host"):
      train.train(tiny_cfg(), str(tmp_path))  # refused before any data, model or checkpoint
    assert not checkpoint.checkpoint_dir(tmp_path).exists()
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with workdir_lib.workdir_lock(tmp_path):  # the dead holder left no stale lock
    with pytest.raises(ClowlabError, match="in use"):
      with workdir_lib.workdir_lock(tmp_path):
        pass
