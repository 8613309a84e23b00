"""launch/launch.py: every launcher's dry run (the exact gcloud / ssh / pip / python commands),
its input checks, real local CPU runs through it (one process, and 2 processes x 2 devices),
and the scripts it runs on a remote machine, run here with a stand-in home directory.

No GCP here: the gcloud commands are checked as text only (docs/launch.md says so).
"""
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import pytest

from tiny import REPO, tiny_cfg

spec = importlib.util.spec_from_file_location("clowlab_launch", REPO / "launch" / "launch.py")
launch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(launch)

R = str(REPO)
PY = sys.executable
TAR = os.path.join(tempfile.gettempdir(), "clowlab-t1.tar.gz")
INSTALL = ("set -e; python3.11 -m venv --help >/dev/null 2>&1 || (sudo apt-get -qq update && "
           "sudo DEBIAN_FRONTEND=noninteractive apt-get -qq install -y python3.11 "
           "python3.11-venv); python3.11 -c \"import sys; sys.exit(sys.version_info < (3, 11))\" "
           "|| { echo \"clowlab needs Python >= 3.11: pass --python\" >&2; exit 1; }; rm -rf "
           "~/clowlab && mkdir -p ~/clowlab && tar -xzf ~/clowlab.tar.gz -C ~/clowlab; python3.11 "
           "-m venv ~/clowlab-venv; ~/clowlab-venv/bin/pip install -q --upgrade pip; "
           "~/clowlab-venv/bin/pip install -q -e ~/clowlab \"jax[tpu]>=0.10.2,<0.11\" gcsfs")
RUN_PREFIX = ("if [ -f ~/clowlab.pid ] && kill -0 $(cat ~/clowlab.pid) 2>/dev/null; then echo "
              "\"clowlab: a run is still going on $(hostname) (pid $(cat ~/clowlab.pid)); stop it "
              "first (--action=stop)\" >&2; exit 1; fi; cd ~/clowlab || exit 1; nohup "
              "~/clowlab-venv/bin/python -m clowlab.main ")
RUN_SUFFIX = " > ~/clowlab.log 2>&1 < /dev/null & echo $! > ~/clowlab.pid"


def dry(capsys, *argv):
  rc = launch.main([*argv, "--dry_run"])
  out, err = capsys.readouterr()
  assert rc == 0, err
  return out.splitlines()


def error(capsys, *argv):
  rc = launch.main([*argv, "--dry_run"])
  out, err = capsys.readouterr()
  assert rc == 2 and out == "", (rc, out)
  return err.strip()


def q(*argv):
  return shlex.join(argv)


# ---------------------------------------------------------------------------------------------
# Dry runs: the exact commands


def test_tpu_vm_dry_run(capsys):
  lines = dry(capsys, "tpu_vm", "--name=t1", "--zone=us-west4-a", "--accelerator=v5litepod-8",
              "--config=configs/mlm.py", "--workdir=gs://bkt/mlm", "--config.total_steps=10",
              "--config.data.train=['a b.txt']", "--config.seed=$HOME")
  gc = ["gcloud", "compute", "tpus", "tpu-vm"]
  run = (RUN_PREFIX + "--config=configs/mlm.py --workdir=gs://bkt/mlm --config.total_steps=10 "
         "\"--config.data.train=['a b.txt']\" \"--config.seed=\\$HOME\"" + RUN_SUFFIX)
  assert lines == [
      q(*gc, "create", "t1", "--zone=us-west4-a", "--accelerator-type=v5litepod-8",
        "--version=v2-alpha-tpuv5-lite"),
      q("git", "-C", R, "archive", "--format=tar.gz", "-o", TAR, "HEAD"),
      q(*gc, "scp", TAR, "t1:clowlab.tar.gz", "--zone=us-west4-a"),
      q(*gc, "ssh", "t1", "--zone=us-west4-a", "--command", INSTALL),
      q(*gc, "ssh", "t1", "--zone=us-west4-a", "--command", run),
  ]
  # The quoting survives both shells: the remote shell sees each override as one argument,
  # with no expansion of $HOME.
  remote = shlex.split(lines[-1])[-1]
  cmd = remote[remote.index("nohup ") + 6:remote.index(" > ~/clowlab.log")]
  out = subprocess.run(["bash", "-c", f"printf '%s\\n' {cmd}"], capture_output=True, text=True,
                       env={"HOME": "/nonexistent", "PATH": os.environ["PATH"]}).stdout
  assert out.splitlines()[-2:] == ["--config.data.train=['a b.txt']", "--config.seed=$HOME"]
  assert "--worker" not in "\n".join(lines)  # a single host: worker 0 only


def test_tpu_pod_dry_run(capsys):
  lines = dry(capsys, "tpu_pod", "--name=t1", "--zone=us-central2-b", "--project=p1",
              "--accelerator=v4-32", "--config=configs/mlm.py", "--workdir=gs://bkt/pod",
              "--spot", "--queued")
  gc = ["gcloud", "compute", "tpus"]
  where = ["--zone=us-central2-b", "--project=p1"]
  assert lines == [
      q(*gc, "queued-resources", "create", "t1", "--node-id=t1", *where,
        "--accelerator-type=v4-32", "--runtime-version=tpu-ubuntu2204-base", "--spot"),
      q(*gc, "queued-resources", "describe", "t1", *where, "--format=value(state.state)")
      + "  # repeated every 30 s until it prints ACTIVE",
      q("git", "-C", R, "archive", "--format=tar.gz", "-o", TAR, "HEAD"),
      q(*gc, "tpu-vm", "scp", TAR, "t1:clowlab.tar.gz", *where, "--worker=all"),
      q(*gc, "tpu-vm", "ssh", "t1", *where, "--worker=all", "--command", INSTALL),
      q(*gc, "tpu-vm", "ssh", "t1", *where, "--worker=all", "--command",
        RUN_PREFIX + "--config=configs/mlm.py --workdir=gs://bkt/pod "
        "--config.distributed.enabled=True" + RUN_SUFFIX),
  ]


def test_tpu_other_actions_dry_run(capsys):
  pod = ["tpu_pod", "--name=t1", "--zone=z"]
  gc = ["gcloud", "compute", "tpus"]
  assert dry(capsys, *pod, "--action=logs,stop,delete") == [
      q(*gc, "tpu-vm", "ssh", "t1", "--zone=z", "--worker=0", "--command",
        "tail -n 100 ~/clowlab.log"),
      q(*gc, "tpu-vm", "ssh", "t1", "--zone=z", "--worker=all", "--command",
        "kill -TERM $(cat ~/clowlab.pid)"),
      q(*gc, "tpu-vm", "delete", "t1", "--zone=z", "--quiet")]
  assert dry(capsys, *pod, "--action=delete", "--queued") == [
      q(*gc, "queued-resources", "delete", "t1", "--zone=z", "--force", "--quiet")]
  # An override that already sets distributed.enabled is not doubled; git:URL@REF clones.
  lines = dry(capsys, *pod, "--action=setup,run", "--accelerator=v5litepod-16",
              "--config=configs/mlm.py", "--workdir=gs://b/r",
              "--config.distributed.enabled=True", "--code=git:git@host:org/clowlab.git@v2")
  assert len(lines) == 2 and lines[1].count("distributed.enabled") == 1
  assert "git clone -q --depth=1 --branch=v2 git@host:org/clowlab.git ~/clowlab" in lines[0]
  assert not any(line.startswith("git -C") for line in lines)


def test_gpu_dry_run(capsys):
  run = RUN_PREFIX + "--config=configs/mlm.py --workdir=gs://b/g" + RUN_SUFFIX
  gtar = os.path.join(tempfile.gettempdir(), "clowlab-gpu.tar.gz")
  lines = dry(capsys, "gpu", "--host=me@box", "--config=configs/mlm.py", "--workdir=gs://b/g")
  install = ("set -e; python3 -c \"import sys; sys.exit(sys.version_info < (3, 11))\" || { echo "
             "\"clowlab needs Python >= 3.11: pass --python\" >&2; exit 1; }; rm -rf ~/clowlab "
             "&& mkdir -p ~/clowlab && tar -xzf ~/clowlab.tar.gz -C ~/clowlab; python3 -m venv "
             "~/clowlab-venv; ~/clowlab-venv/bin/pip install -q --upgrade pip; "
             "~/clowlab-venv/bin/pip install -q -e ~/clowlab \"jax[cuda12]>=0.10.2,<0.11\" gcsfs")
  assert lines == [q("git", "-C", R, "archive", "--format=tar.gz", "-o", gtar, "HEAD"),
                   q("scp", gtar, "me@box:clowlab.tar.gz"),
                   q("ssh", "me@box", install), q("ssh", "me@box", run)]
  assert dry(capsys, "gpu", "--host=me@box", "--action=logs,stop") == [
      q("ssh", "me@box", "tail -n 100 ~/clowlab.log"),
      q("ssh", "me@box", "kill -TERM $(cat ~/clowlab.pid)")]
  # This machine: pip into the current environment, then the run in the foreground.
  assert dry(capsys, "gpu", "--config=configs/mlm.py", "--workdir=runs/g", "--cuda=cuda13") == [
      q(PY, "-m", "pip", "install", "-e", R, "jax[cuda13]>=0.10.2,<0.11", "gcsfs"),
      q(PY, "-m", "clowlab.main", "--config=configs/mlm.py", "--workdir=runs/g")]


def test_local_dry_run(capsys, monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_foo=1 --xla_force_host_platform_device_count=8")
  env = ["env", "JAX_PLATFORMS=cpu"]
  assert dry(capsys, "local", "--config=configs/mlm.py:runlocal", "--workdir=runs/x",
             "--config.total_steps=4") == [
      q(*env, "XLA_FLAGS=--xla_cpu_foo=1 --xla_force_host_platform_device_count=1", PY, "-m",
        "clowlab.main", "--config=configs/mlm.py:runlocal", "--workdir=runs/x",
        "--config.total_steps=4")]
  lines = dry(capsys, "local", "--config=configs/mlm.py:runlocal", "--workdir=gs://b/l",
              "--devices=4", "--processes=2", "--port=4321")
  assert lines == [
      q(*env, "XLA_FLAGS=--xla_cpu_foo=1 --xla_force_host_platform_device_count=4", PY, "-m",
        "clowlab.main", "--config=configs/mlm.py:runlocal", "--workdir=gs://b/l",
        "--config.distributed.enabled=True",
        "--config.distributed.coordinator_address=127.0.0.1:4321",
        "--config.distributed.num_processes=2", "--config.distributed.cpu_collectives=gloo",
        f"--config.distributed.process_id={i}") + " &" for i in range(2)] + ["wait"]


def test_wrapper_scripts_call_the_launcher():
  common = ["--config=configs/mlm.py", "--workdir=gs://b/w", "--action=run", "--dry_run"]
  tpu = ["--name=n", "--zone=z", "--accelerator=v4-32"]
  for target, extra, rc in [("tpu_vm", tpu, 2), ("tpu_pod", tpu, 0), ("gpu", [], 0),
                            ("local", [], 0)]:
    r = subprocess.run([str(REPO / "launch" / f"{target}.sh"), *common, *extra], cwd=R,
                       capture_output=True, text=True, env={**os.environ, "PYTHON": PY})
    assert r.returncode == rc, r.stderr
    if rc:  # v4-32 has 4 hosts
      assert "use `launch.py tpu_pod`" in r.stderr
    else:
      assert "clowlab.main --config=configs/mlm.py --workdir=gs://b/w" in r.stdout


def test_remote_scripts_are_valid_shell(capsys):
  lines = dry(capsys, "tpu_pod", "--name=t", "--zone=z", "--accelerator=v4-16",
              "--config=configs/mlm.py", "--workdir=gs://b/r", "--action=setup,run,logs,stop",
              "--config.data.train=['x y']", "--code=git:https://h/o/r.git@main")
  for line in lines:
    script = shlex.split(line)[-1]
    r = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, (script, r.stderr)


# ---------------------------------------------------------------------------------------------
# Input checks


@pytest.mark.parametrize("argv,want", [
    (["local", "--config=configs/mlm.py"], "--workdir is required"),
    (["local", "--workdir=w"], "--config is required"),
    (["local", "--config=configs/nope.py:runlocal", "--workdir=w"],
     "--config=configs/nope.py:runlocal: configs/nope.py is not a file"),
    (["local", "--config=configs/mlm.py", "--workdir=w", "--devices=0"], "--devices=0"),
    (["local", "--config=configs/mlm.py", "--workdir=w", "--bogus=1"],
     "unknown arguments ['--bogus=1']"),
    (["local", "--config=configs/mlm.py", "--workdir=w", "--config.seed"],
     "--config.seed has no value"),
    (["local", "--config=configs/mlm.py", "--workdir=gs:///x"], "must be gs://BUCKET/PATH"),
    (["local", "--config=configs/mlm.py", "--workdir=s3://b/x"], "must be gs://BUCKET/PATH"),
    (["local", "--config=configs/mlm.py", "--workdir=w", "--action=create"],
     "--action=create: local knows run"),
    (["tpu_pod", "--name=n", "--zone=z", "--accelerator=v4-32", "--config=configs/mlm.py",
      "--workdir=runs/pod"], "is a local path, but a pod slice runs one process on every host"),
    (["tpu_pod", "--name=n", "--zone=z", "--accelerator=v4-8", "--config=configs/mlm.py",
      "--workdir=gs://b/r"], "v4-8 is a single-host TPU; use `launch.py tpu_vm`"),
    (["tpu_vm", "--name=n", "--zone=z", "--accelerator=v5litepod-16", "--config=configs/mlm.py",
      "--workdir=gs://b/r"], "v5litepod-16 has 4 hosts; use `launch.py tpu_pod`"),
    (["tpu_vm", "--name=n", "--zone=z", "--accelerator=v7x-8", "--config=configs/mlm.py",
      "--workdir=gs://b/r"], "--accelerator=v7x-8: the number of hosts of this TPU type"),
    (["tpu_vm", "--name=n", "--zone=z", "--accelerator=v4-12", "--action=create"],
     "--accelerator=v4-12: the number of hosts"),
    (["tpu_vm", "--name=n", "--zone=z", "--accelerator=v7x-8", "--hosts=1", "--action=create"],
     "no default runtime for --accelerator=v7x-8; pass --version"),
    (["tpu_vm", "--zone=z", "--accelerator=v4-8"], "tpu_vm needs --name"),
    (["tpu_vm", "--name=n", "--zone=z", "--action=create"], "tpu_vm needs --accelerator"),
    (["tpu_vm", "--name=n", "--zone=z", "--accelerator=v4-8", "--config=/etc/hosts",
      "--workdir=gs://b/r"], "is outside the repository"),
    (["tpu_vm", "--name=n", "--zone=z", "--accelerator=v4-8", "--config=configs/mlm.py",
      "--workdir=gs://b/r", "--code=rsync"], "--code=rsync: pass copy"),
    (["gpu", "--config=configs/mlm.py", "--workdir=w", "--action=logs"],
     "--action=logs/stop are for a run started on --host"),
])
def test_input_errors(capsys, argv, want):
  assert want in error(capsys, *argv)


def test_unknown_type_runs_with_hosts(capsys):
  lines = dry(capsys, "tpu_pod", "--name=n", "--zone=z", "--accelerator=v7x-16", "--hosts=2",
              "--version=v2-alpha-tpu7x", "--action=create")
  assert lines == [q("gcloud", "compute", "tpus", "tpu-vm", "create", "n", "--zone=z",
                     "--accelerator-type=v7x-16", "--version=v2-alpha-tpu7x")]


def test_tpu_hosts_table():
  want = {"v2-8": 1, "v3-32": 4, "v4-8": 1, "v4-16": 2, "v4-32": 4, "v5p-8": 1, "v5p-128": 16,
          "v5litepod-1": 1, "v5litepod-4": 1, "v5litepod-8": 1, "v5litepod-16": 4,
          "v5litepod-256": 64, "v6e-8": 1, "v6e-16": 4, "v6e-64": 16}
  assert {k: launch.tpu_hosts(k) for k in want} == want
  for bad in ("v4-4", "v5litepod-2", "v5litepod-12", "v6e", "tpu-8"):
    with pytest.raises(launch.ClowlabError, match="not known here"):
      launch.tpu_hosts(bad)


# ---------------------------------------------------------------------------------------------
# Real runs on this machine's CPU


# The tiny MLM run of tests/tiny.py as overrides of configs/mlm.py:runlocal.
TINY = {"checkpoint_every": 2, "eval_every": 0, "mode": "train", "progress_bar": False,
        "batch_size": 8, "seq_len": 32, "model.hidden_size": 32, "model.num_layers": 1,
        "model.num_heads": 2, "model.intermediate_size": 64,
        "model.max_position_embeddings": 32, "optim.warmup_steps": 2, "log_every": 1,
        "async_checkpoint": False}


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  from clowlab import train  # noqa: PLC0415
  d = tmp_path_factory.mktemp("tok")
  train.resolve_tokenizer(tiny_cfg(), str(d))
  return str(d / "tokenizer")


def _overrides(tok, **kw):
  return [f"--config.{k}={v}" for k, v in {**TINY, "tokenizer": tok, **kw}.items()]


def _launch(*argv, timeout=300):
  return subprocess.run([PY, str(REPO / "launch" / "launch.py"), *argv], cwd=R,
                        capture_output=True, text=True, timeout=timeout)


def _steps(workdir):
  from clowlab import checkpoint  # noqa: PLC0415
  with checkpoint.Manager(workdir, read_only=True, max_to_keep=None) as m:
    return m.all_steps()


def _logged_steps(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["step"] for line in f if line.strip()]


def test_local_run_and_resume(tmp_path, tok):
  """The local launcher trains for real (2 CPU devices), and the same command with more steps
  resumes: the second run starts at the first one's last step."""
  w = str(tmp_path / "run")
  base = ["local", "--config=configs/mlm.py:runlocal", f"--workdir={w}", "--devices=2"]
  r = _launch(*base, *_overrides(tok, total_steps=4))
  assert r.returncode == 0, r.stderr[-3000:]
  assert "mesh {'data': 1, 'fsdp': 2} | step 0 -> 4" in r.stdout
  assert "+ env JAX_PLATFORMS=cpu" in r.stderr  # each command is echoed as it runs
  assert _steps(w) == [2, 4] and _logged_steps(w) == [1, 2, 3, 4]
  r = _launch(*base, *_overrides(tok, total_steps=6))
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"resumed from {w}" in r.stdout and "step 4 -> 6" in r.stdout
  assert _steps(w) == [2, 4, 6] and _logged_steps(w) == [1, 2, 3, 4, 5, 6]
  # A mistake in the run itself comes back as clowlab's exit code and one-line message.
  r = _launch(*base, *_overrides(tok, total_steps=6), "--config.optim.lrr=1")
  assert r.returncode == 2 and "did you mean 'lr'" in r.stderr


@pytest.mark.slow
def test_local_two_processes(tmp_path, tok):
  """2 processes x 2 CPU devices through the launcher's --config.distributed.* overrides (the
  None-valued keys are typed placeholders, so the command line can set them): one 4-device
  mesh, checkpoints written once."""
  w = str(tmp_path / "mp")
  r = _launch("local", "--config=configs/mlm.py:runlocal", f"--workdir={w}", "--devices=2",
              "--processes=2", *_overrides(tok, total_steps=2))
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert "mesh {'data': 1, 'fsdp': 4} | step 0 -> 2" in r.stdout
  assert r.stdout.count("clowlab: done at step 2") == 1  # process 0 speaks for the run
  assert _steps(w) == [2]


@pytest.mark.slow
def test_remote_run_and_stop_scripts(tmp_path, tok):
  """The scripts a TPU VM runs, run here with a stand-in home (~/clowlab = this repository,
  ~/clowlab-venv = this environment): `run` starts the training in the background and
  returns, with its log and pid in ~; a second `run` is refused while it lives; `stop` sends
  SIGTERM, and the run saves a checkpoint and exits."""
  venv_python = os.path.join(sys.prefix, "bin", "python")
  if sys.prefix == sys.base_prefix or not os.path.exists(venv_python):
    pytest.skip("needs to run inside a virtual environment")
  home = tmp_path / "home"
  home.mkdir()
  os.symlink(R, home / "clowlab")
  os.symlink(sys.prefix, home / "clowlab-venv")
  w = str(tmp_path / "run")
  a, steps = launch.steps_for(
      ["tpu_vm", "--name=n", "--zone=z", "--accelerator=v4-8", "--action=run,stop",
       "--config=configs/mlm.py:runlocal", f"--workdir={w}",
       *_overrides(tok, total_steps=100000, checkpoint_every=100000)])
  run, stop = (s.argv[-1] for s in steps)
  env = {**os.environ, "HOME": str(home)}

  def sh(script):
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)

  t0 = time.time()
  r = sh(run)
  assert r.returncode == 0 and time.time() - t0 < 10, r.stderr  # returns at once
  pid = int((home / "clowlab.pid").read_text())
  try:
    deadline = time.time() + 240
    while not (os.path.exists(os.path.join(w, "metrics.jsonl")) and _logged_steps(w)):
      assert time.time() < deadline, (home / "clowlab.log").read_text()[-3000:]
      time.sleep(1)
    r = sh(run)
    assert r.returncode == 1 and "a run is still going on" in r.stderr and str(pid) in r.stderr
    assert sh(stop).returncode == 0
    deadline = time.time() + 120
    while os.path.exists(f"/proc/{pid}") and "zombie" not in _proc_state(pid):
      assert time.time() < deadline, "the run did not stop on SIGTERM"
      time.sleep(0.5)
  finally:
    if os.path.exists(f"/proc/{pid}"):
      os.kill(pid, 9)
  log = (home / "clowlab.log").read_text()
  assert "clowlab: SIGTERM: saved step" in log, log[-3000:]
  saved = int(log.split("clowlab: SIGTERM: saved step ")[1].split(",")[0])
  assert _steps(w) == [saved]


def _proc_state(pid):
  try:
    with open(f"/proc/{pid}/status") as f:
      return next((line for line in f if line.startswith("State:")), "").lower()
  except FileNotFoundError:
    return "zombie"


def test_docs_dry_runs_are_current(capsys, monkeypatch):
  """Every `$ launch/<target>.sh ... --dry_run` block in docs/launch.md is what the launcher
  prints now (this checkout and this Python shown as /path/to/clowlab, /path/to/venv/...)."""
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  text = (REPO / "docs" / "launch.md").read_text()
  blocks = [b.split("```")[0].strip().splitlines() for b in text.split("```console\n")[1:]]
  assert len(blocks) >= 9
  for first, *want in blocks:
    argv = shlex.split(first.removeprefix("$ "))
    target = os.path.basename(argv[0]).removesuffix(".sh")
    assert argv[-1] == "--dry_run"
    launch.main([target, *argv[1:]])
    out, err = capsys.readouterr()
    assert _placeholders(out + err).splitlines() == want, first


def _placeholders(text: str, py: str = PY) -> str:
  """This interpreter, checkout and temp dir as the docs write them. Longest path first: the
  README's venv (.venv) lies inside the checkout, and TMPDIR may lie inside either."""
  for real, shown in sorted([(py, "/path/to/venv/bin/python"), (R, "/path/to/clowlab"),
                             (tempfile.gettempdir() + "/", "/tmp/")],
                            key=lambda p: -len(p[0])):
    text = text.replace(real, shown)
  return text


@pytest.mark.parametrize("venv_inside", [True, False])
def test_placeholders_wherever_the_venv_is(monkeypatch, venv_inside):
  """The docs' dry runs compare equal with the venv inside the checkout (README's .venv) or
  beside it, and with TMPDIR inside the checkout."""
  py = f"{R}/.venv/bin/python" if venv_inside else "/opt/venvs/x/bin/python"
  monkeypatch.setattr(tempfile, "tempdir", f"{R}/tmp")
  text = f"{py} -m pip install -e {R}\ngit -C {R} archive -o {R}/tmp/c.tar.gz HEAD"
  assert _placeholders(text, py) == (
      "/path/to/venv/bin/python -m pip install -e /path/to/clowlab\n"
      "git -C /path/to/clowlab archive -o /tmp/c.tar.gz HEAD")
