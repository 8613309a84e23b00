"""Start a clowlab run on a TPU VM, a TPU pod slice, a GPU box or this machine's CPU.

    python launch/launch.py tpu_vm  --name=N --zone=Z --accelerator=v5litepod-8 \
        --config=configs/mlm.py --workdir=gs://BUCKET/run [--config.KEY=VALUE ...]
    python launch/launch.py tpu_pod --name=N --zone=Z --accelerator=v4-32 --config=... \
        --workdir=gs://BUCKET/run
    python launch/launch.py gpu [--host=USER@BOX] --config=... --workdir=DIR|gs://...
    python launch/launch.py local --config=configs/mlm.py:runlocal --workdir=runs/x \
        [--devices=8] [--processes=2]

--action (TPU: create, setup, run, logs, stop, delete, or `up` = create,setup,run; GPU: setup,
run, logs, stop, or `up` = setup,run; a comma list runs several in order). --dry_run prints
every command, one a line, shell-quoted, exactly as it would run (lines ending in ` &` run
side by side, `wait` waits for them), and runs nothing. `--config.*` arguments are passed to
`python -m clowlab.main` unchanged. A TPU pod runs the same command on every worker
(`--worker=all`) with --config.distributed.enabled=True (jax.distributed discovers the hosts),
and needs a gs:// workdir. The code shipped to a remote machine is the repository's committed
HEAD (`git archive`), unless --code=git:URL[@REF] clones instead. Wrappers: launch/*.sh.
See docs/launch.md.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from clowlab.errors import ClowlabError  # noqa: E402 - no jax: the launcher starts at once

JAX_SPEC = "jax[{}]>=0.10.2,<0.11"  # the jax range setup.py pins, with the accelerator's extra
REMOTE_DIR = "~/clowlab"            # the code on a remote machine
REMOTE_VENV = "~/clowlab-venv"
REMOTE_LOG = "~/clowlab.log"        # the run's output (process 0's on worker 0 of a pod)
REMOTE_PID = "~/clowlab.pid"

# TPU types: hosts of a slice. v2/v3/v4/v5p name TensorCores (2 a chip, 4 chips a host);
# v5litepod (v5e) and v6e name chips: 1, 4 or 8 on one host, 4 a host in multi-host slices.
_CORES_PER_HOST = {"v2": 8, "v3": 8, "v4": 8, "v5p": 8}
_CHIPS = ("v5litepod", "v6e")
DEFAULT_RUNTIME = {"v2": "tpu-ubuntu2204-base", "v3": "tpu-ubuntu2204-base",
                   "v4": "tpu-ubuntu2204-base", "v5p": "v2-alpha-tpuv5",
                   "v5litepod": "v2-alpha-tpuv5-lite", "v6e": "v2-alpha-tpuv6e"}
ACTIONS = {"tpu_vm": ("create", "setup", "run", "logs", "stop", "delete"),
           "tpu_pod": ("create", "setup", "run", "logs", "stop", "delete"),
           "gpu": ("setup", "run", "logs", "stop"), "local": ("run",)}
UP = {"tpu_vm": "create,setup,run", "tpu_pod": "create,setup,run", "gpu": "setup,run",
      "local": "run"}


def tpu_hosts(accelerator: str, hosts: int | None = None) -> int:
  """The number of hosts (VMs) of a TPU slice type, e.g. v4-32 -> 4, v5litepod-16 -> 4."""
  if hosts is not None:
    if hosts < 1:
      raise ClowlabError(f"clowlab launch: --hosts={hosts} must be at least 1.")
    return hosts
  m = re.fullmatch(r"(v2|v3|v4|v5p|v5litepod|v6e)-(\d+)", accelerator)
  n = int(m.group(2)) if m else 0
  if m and m.group(1) in _CORES_PER_HOST and n >= 8 and n % 8 == 0:
    return n // _CORES_PER_HOST[m.group(1)]
  if m and m.group(1) in _CHIPS and (n in (1, 4, 8) or (n >= 16 and n % 4 == 0)):
    return 1 if n <= 8 else n // 4
  raise ClowlabError(
      f"clowlab launch: --accelerator={accelerator}: the number of hosts of this TPU type is "
      "not known here (known: v2-N, v3-N, v4-N, v5p-N with N a multiple of 8; v5litepod-N, "
      "v6e-N with N 1, 4, 8 or a multiple of 4 from 16). Check the name, or pass --hosts=H "
      "(and --version) for a type this script does not know.")


class Step:
  """One command: argv runs as is (no shell); `background` runs it beside the next ones
  (printed with ` &`); `until` repeats it every 30 s until its output is that word."""

  def __init__(self, argv: list[str], background: bool = False, until: str | None = None):
    self.argv, self.background, self.until = [str(a) for a in argv], background, until

  def line(self) -> str:
    s = shlex.join(self.argv)
    if self.background:
      return s + " &"
    if self.until:
      return s + f"  # repeated every 30 s until it prints {self.until}"
    return s


WAIT = Step(["wait"])  # printed after background steps; execution waits for them


# ---------------------------------------------------------------------------------------------
# Arguments


def _config_path(spec: str, remote: bool) -> str:
  """--config=FILE[:variant] checked to exist; for a remote machine, relative to the repo."""
  if not spec:
    raise ClowlabError("clowlab launch: --config is required (e.g. --config=configs/mlm.py or "
                       "configs/mlm.py:runlocal).")
  path, sep, variant = spec.partition(":")
  if not os.path.isfile(path):
    raise ClowlabError(f"clowlab launch: --config={spec}: {path} is not a file. Pass a config "
                       "file (relative to the current directory), e.g. configs/mlm.py.")
  if not remote:
    return spec
  rel = os.path.relpath(os.path.abspath(path), REPO)
  if rel.startswith(".."):
    raise ClowlabError(f"clowlab launch: --config={spec} is outside the repository {REPO}, so "
                       "it would not reach the remote machine. Put it under configs/ (and "
                       "commit it: the shipped code is the committed HEAD).")
  return rel + sep + variant


def _check_workdir(a, target: str) -> None:
  if not a.workdir:
    raise ClowlabError("clowlab launch: --workdir is required to run (a gs://BUCKET/PATH for a "
                       "TPU, or a directory).")
  if "://" in a.workdir:
    scheme, _, rest = a.workdir.partition("://")
    if scheme != "gs" or not rest.split("/")[0]:
      raise ClowlabError(f"clowlab launch: --workdir={a.workdir}: a remote workdir must be "
                         "gs://BUCKET/PATH.")
  elif target == "tpu_pod":
    raise ClowlabError(
        f"clowlab launch: --workdir={a.workdir} is a local path, but a pod slice runs one "
        "process on every host and each would write its own disk (checkpoints in pieces). "
        "Pass --workdir=gs://BUCKET/PATH.")
  elif target == "tpu_vm":
    print(f"clowlab launch: warning: --workdir={a.workdir} is on the TPU VM's disk and goes "
          "with the VM when it is deleted; gs://BUCKET/PATH keeps it.", file=sys.stderr)


def _overrides(extra: list[str]) -> list[str]:
  bad = [x for x in extra if not x.startswith("--config.")]
  if bad:
    raise ClowlabError(f"clowlab launch: unknown arguments {bad}. Options are listed by "
                       "--help; config overrides are --config.KEY=VALUE.")
  for x in extra:
    if "=" not in x:
      raise ClowlabError(f"clowlab launch: {x} has no value. Write --config.KEY=VALUE.")
  return list(extra)


def _main_args(config: str, workdir: str, overrides: list[str]) -> list[str]:
  return ["-m", "clowlab.main", f"--config={config}", f"--workdir={workdir}", *overrides]


# ---------------------------------------------------------------------------------------------
# Remote machines (TPU VMs over gcloud, GPU boxes over ssh)


def _tarball(name: str) -> str:
  return os.path.join(tempfile.gettempdir(), f"clowlab-{name}.tar.gz")


def _archive_step(name: str) -> Step:
  return Step(["git", "-C", REPO, "archive", "--format=tar.gz", "-o", _tarball(name), "HEAD"])


def _dq(s: str) -> str:
  """Shell-quotes `s` for a script that is itself passed as one (single-quoted) argument:
  double quotes, so the printed command stays readable."""
  if s and re.fullmatch(r"[\w@%+=:,./~-]+", s):
    return s
  return '"' + re.sub(r'(["\\$`])', r"\\\1", s) + '"'


def _install_script(a, jax_extra: str, apt_python: bool) -> str:
  """The shell script that installs clowlab on a remote machine (from ~/clowlab.tar.gz or a
  git clone) into ~/clowlab-venv."""
  py = a.python
  parts = ["set -e"]
  if apt_python:  # TPU VM images ship Python 3.10; clowlab needs >= 3.11
    parts.append(f"{py} -m venv --help >/dev/null 2>&1 || (sudo apt-get -qq update && "
                 f"sudo DEBIAN_FRONTEND=noninteractive apt-get -qq install -y {py} {py}-venv)")
  parts.append(f"{py} -c \"import sys; sys.exit(sys.version_info < (3, 11))\" || "
               f"{{ echo \"clowlab needs Python >= 3.11: pass --python\" >&2; exit 1; }}")
  if a.code == "copy":
    parts.append(f"rm -rf {REMOTE_DIR} && mkdir -p {REMOTE_DIR} && "
                 f"tar -xzf ~/clowlab.tar.gz -C {REMOTE_DIR}")
  else:
    url, ref = a.code[len("git:"):], ""
    if url.rfind("@") > url.rfind("/"):  # URL@REF (not the user@ of git@host:org/repo)
      url, _, ref = url.rpartition("@")
    branch = f" --branch={_dq(ref)}" if ref else ""
    parts.append(f"rm -rf {REMOTE_DIR} && git clone -q --depth=1{branch} {_dq(url)} "
                 f"{REMOTE_DIR}")
  parts.append(f"{py} -m venv {REMOTE_VENV}")
  parts.append(f"{REMOTE_VENV}/bin/pip install -q --upgrade pip")
  # gcsfs: epath's gs:// backend (workdir I/O); orbax/tensorstore reach gs:// on their own.
  parts.append(f"{REMOTE_VENV}/bin/pip install -q -e {REMOTE_DIR} "
               f"{_dq(JAX_SPEC.format(jax_extra))} gcsfs")
  return "; ".join(parts)


def _run_script(args: list[str]) -> str:
  """Starts `python -m clowlab.main ...` in the background, surviving the ssh session (nohup),
  output to ~/clowlab.log, pid to ~/clowlab.pid; refuses while an earlier run is alive. Only
  the nohup command goes to the background (`cd && nohup ... &` would background a subshell
  that holds ssh's output open and takes SIGTERM in the run's place)."""
  cmd = " ".join([f"{REMOTE_VENV}/bin/python", *map(_dq, args)])
  return (f"if [ -f {REMOTE_PID} ] && kill -0 $(cat {REMOTE_PID}) 2>/dev/null; then "
          f"echo \"clowlab: a run is still going on $(hostname) (pid $(cat {REMOTE_PID})); "
          f"stop it first (--action=stop)\" >&2; exit 1; fi; "
          f"cd {REMOTE_DIR} || exit 1; nohup {cmd} > {REMOTE_LOG} 2>&1 < /dev/null & "
          f"echo $! > {REMOTE_PID}")


STOP_SCRIPT = f"kill -TERM $(cat {REMOTE_PID})"  # SIGTERM: the run saves a checkpoint, exits
LOGS_SCRIPT = f"tail -n 100 {REMOTE_LOG}"


def tpu_steps(a, target: str, overrides: list[str]) -> list[Step]:
  if not a.name or not a.zone:
    raise ClowlabError(f"clowlab launch: {target} needs --name (the TPU's name) and --zone "
                       "(e.g. us-central2-b).")
  actions = _actions(a, target)
  where = [f"--zone={a.zone}"] + ([f"--project={a.project}"] if a.project else [])
  pod = target == "tpu_pod"
  family = (a.accelerator or "").split("-")[0]
  if "create" in actions or "run" in actions:
    if not a.accelerator:
      raise ClowlabError(f"clowlab launch: {target} needs --accelerator (e.g. "
                         f"{'v4-32 or v5litepod-16' if pod else 'v4-8 or v5litepod-8'}).")
    hosts = tpu_hosts(a.accelerator, a.hosts)
    if pod and hosts == 1:
      raise ClowlabError(f"clowlab launch: --accelerator={a.accelerator} is a single-host "
                         "TPU; use `launch.py tpu_vm` for it, or a pod slice type (e.g. v4-32, "
                         "v5litepod-16).")
    if not pod and hosts > 1:
      raise ClowlabError(f"clowlab launch: --accelerator={a.accelerator} has {hosts} hosts; "
                         "use `launch.py tpu_pod` for it (the same command on every worker), or "
                         "a single-host type (e.g. v4-8, v5litepod-8).")
  version = a.version or DEFAULT_RUNTIME.get(family)
  if "create" in actions and not version:
    raise ClowlabError(f"clowlab launch: no default runtime for --accelerator={a.accelerator}; "
                       "pass --version (e.g. tpu-ubuntu2204-base).")
  if "run" in actions:
    _check_workdir(a, target)
    config = _config_path(a.config, remote=True)
    if pod and not any(o.startswith("--config.distributed.enabled=") for o in overrides):
      overrides = overrides + ["--config.distributed.enabled=True"]
  if a.code != "copy" and not a.code.startswith("git:"):
    raise ClowlabError(f"clowlab launch: --code={a.code}: pass copy (ship this repository's "
                       "HEAD) or git:URL[@REF].")
  gc = ["gcloud", "compute", "tpus"]
  workers = ["--worker=all"] if pod else []

  def ssh(script, worker=None):
    w = [f"--worker={worker}"] if worker is not None else workers
    return Step([*gc, "tpu-vm", "ssh", a.name, *where, *w, "--command", script])

  steps = []
  for action in actions:
    if action == "create":
      if a.queued:
        steps.append(Step([*gc, "queued-resources", "create", a.name, f"--node-id={a.name}",
                           *where, f"--accelerator-type={a.accelerator}",
                           f"--runtime-version={version}"] + (["--spot"] if a.spot else [])))
        steps.append(Step([*gc, "queued-resources", "describe", a.name, *where,
                           "--format=value(state.state)"], until="ACTIVE"))
      else:
        steps.append(Step([*gc, "tpu-vm", "create", a.name, *where,
                           f"--accelerator-type={a.accelerator}", f"--version={version}"]
                          + (["--spot"] if a.spot else [])))
    elif action == "setup":
      if a.code == "copy":
        steps.append(_archive_step(a.name))
        steps.append(Step([*gc, "tpu-vm", "scp", _tarball(a.name), f"{a.name}:clowlab.tar.gz",
                           *where, *workers]))
      steps.append(ssh(_install_script(a, "tpu", apt_python=True)))
    elif action == "run":
      steps.append(ssh(_run_script(_main_args(config, a.workdir, overrides))))
    elif action == "logs":
      steps.append(ssh(LOGS_SCRIPT, worker=0 if pod else None))
    elif action == "stop":
      steps.append(ssh(STOP_SCRIPT))
    elif action == "delete":
      if a.queued:
        steps.append(Step([*gc, "queued-resources", "delete", a.name, *where, "--force",
                           "--quiet"]))
      else:
        steps.append(Step([*gc, "tpu-vm", "delete", a.name, *where, "--quiet"]))
  return steps


def gpu_steps(a, overrides: list[str]) -> list[Step]:
  actions = _actions(a, "gpu")
  jax_req = JAX_SPEC.format(a.cuda)
  if "run" in actions:
    _check_workdir(a, "gpu")
  if not a.host:  # this machine: the current Python environment, in the foreground
    if {"logs", "stop"} & set(actions):
      raise ClowlabError("clowlab launch: --action=logs/stop are for a run started on "
                         "--host=USER@BOX; a local run is in the foreground (Ctrl-C stops it).")
    steps = []
    for action in actions:
      if action == "setup":
        steps.append(Step([sys.executable, "-m", "pip", "install", "-e", REPO, jax_req,
                           "gcsfs"]))
      else:
        steps.append(Step([sys.executable,
                           *_main_args(_config_path(a.config, remote=False), a.workdir,
                                       overrides)]))
    return steps
  steps = []
  for action in actions:
    if action == "setup":
      if a.code == "copy":
        steps.append(_archive_step("gpu"))
        steps.append(Step(["scp", _tarball("gpu"), f"{a.host}:clowlab.tar.gz"]))
      steps.append(Step(["ssh", a.host, _install_script(a, a.cuda, apt_python=False)]))
    elif action == "run":
      config = _config_path(a.config, remote=True)
      steps.append(Step(["ssh", a.host, _run_script(_main_args(config, a.workdir, overrides))]))
    elif action == "logs":
      steps.append(Step(["ssh", a.host, LOGS_SCRIPT]))
    elif action == "stop":
      steps.append(Step(["ssh", a.host, STOP_SCRIPT]))
  return steps


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def local_steps(a, overrides: list[str]) -> list[Step]:
  _actions(a, "local")
  _check_workdir(a, "local")
  config = _config_path(a.config, remote=False)
  if a.devices < 1 or a.processes < 1:
    raise ClowlabError(f"clowlab launch: --devices={a.devices} and --processes={a.processes} "
                       "must be at least 1.")
  # The device count replaces any in XLA_FLAGS; the other flags there are kept.
  xla = [f for f in os.environ.get("XLA_FLAGS", "").split()
         if not f.startswith("--xla_force_host_platform_device_count")]
  env = ["env", "JAX_PLATFORMS=cpu",
         "XLA_FLAGS=" + " ".join(xla + [f"--xla_force_host_platform_device_count={a.devices}"])]
  main = [a.python or sys.executable, *_main_args(config, a.workdir, overrides)]
  if a.processes == 1:
    return [Step(env + main)]
  # P processes x K devices on this host, one global mesh: jax.distributed over localhost with
  # gloo collectives (as tests/multiprocess_worker.py); process 0 coordinates.
  port = a.port or _free_port()
  dist = ["--config.distributed.enabled=True",
          f"--config.distributed.coordinator_address=127.0.0.1:{port}",
          f"--config.distributed.num_processes={a.processes}",
          "--config.distributed.cpu_collectives=gloo"]
  return [Step(env + main + dist + [f"--config.distributed.process_id={i}"], background=True)
          for i in range(a.processes)] + [WAIT]


def _actions(a, target: str) -> list[str]:
  names = [x for x in (UP[target] if a.action == "up" else a.action).split(",") if x]
  bad = [x for x in names if x not in ACTIONS[target]]
  if bad or not names:
    raise ClowlabError(f"clowlab launch: --action={a.action}: {target} knows "
                       f"{', '.join(ACTIONS[target])} and up ({UP[target]}).")
  return names


# ---------------------------------------------------------------------------------------------
# Execution


def execute(steps: list[Step]) -> int:
  """Runs the steps in order (background ones side by side until `wait`); stops at the first
  failure with its exit code. Each line is echoed to stderr first, as `set -x` would."""
  group: list[subprocess.Popen] = []
  for step in steps:
    print(f"+ {step.line()}", file=sys.stderr, flush=True)
    if step is WAIT:
      rc = _wait_all(group)
      group = []
      if rc:
        return rc
    elif step.background:
      group.append(subprocess.Popen(step.argv))
    elif step.until:
      while True:
        r = subprocess.run(step.argv, capture_output=True, text=True)
        state = r.stdout.strip()
        if r.returncode or state in ("FAILED", "SUSPENDED"):
          print(f"clowlab launch: {shlex.join(step.argv)} -> {state or r.stderr.strip()}",
                file=sys.stderr)
          return r.returncode or 1
        if state == step.until:
          break
        print(f"clowlab launch: state {state or '?'}; waiting for {step.until}",
              file=sys.stderr, flush=True)
        time.sleep(30)
    else:
      rc = subprocess.run(step.argv).returncode
      if rc:
        return rc
  return _wait_all(group)


def _wait_all(group: list[subprocess.Popen]) -> int:
  """Waits for side-by-side processes; when one fails, the others (which would wait for it
  forever in a collective) are stopped."""
  rc = 0
  pending = list(group)
  while pending:
    for p in list(pending):
      code = p.poll()
      if code is None:
        continue
      pending.remove(p)
      if code and not rc:
        rc = code
        for q in pending:
          q.terminate()
    time.sleep(0.2)
  return rc


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="launch.py", description=__doc__.split("\n\n")[0],
                              allow_abbrev=False)
  sub = p.add_subparsers(dest="target", required=True)
  for target in ("tpu_vm", "tpu_pod", "gpu", "local"):
    s = sub.add_parser(target, allow_abbrev=False)
    s.add_argument("--config", default="", help="configs/<method>.py[:variant]")
    s.add_argument("--workdir", default="", help="gs://BUCKET/PATH (TPU) or a directory")
    s.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    s.add_argument("--action", default="up", help=f"{', '.join(ACTIONS[target])} or up "
                   f"({UP[target]}); a comma list")
    if target in ("tpu_vm", "tpu_pod"):
      s.add_argument("--name", default="", help="the TPU's name")
      s.add_argument("--zone", default="")
      s.add_argument("--project", default="", help="default: gcloud's configured project")
      s.add_argument("--accelerator", default="", help="e.g. v4-8, v5litepod-8, v4-32")
      s.add_argument("--version", default="", help="TPU runtime (default by TPU family)")
      s.add_argument("--hosts", type=int, default=None,
                     help="hosts of an --accelerator this script does not know")
      s.add_argument("--spot", action="store_true", help="a spot (preemptible) TPU")
      s.add_argument("--queued", action="store_true",
                     help="create through a queued resource and wait until it is ACTIVE")
    if target in ("tpu_vm", "tpu_pod", "gpu"):
      s.add_argument("--code", default="copy", help="copy (git archive HEAD) or git:URL[@REF]")
      s.add_argument("--python", default="python3.11" if target != "gpu" else "python3",
                     help="the remote Python (>= 3.11) that makes the venv")
    if target == "gpu":
      s.add_argument("--host", default="", help="USER@BOX over ssh; empty: this machine")
      s.add_argument("--cuda", default="cuda12", help="jax's CUDA extra: cuda12 or cuda13")
    if target == "local":
      s.add_argument("--devices", type=int, default=1,
                     help="CPU devices per process (XLA_FLAGS host device count)")
      s.add_argument("--processes", type=int, default=1,
                     help="processes on this machine, one global mesh (jax.distributed, gloo)")
      s.add_argument("--port", type=int, default=0, help="coordinator port (default: a free one)")
      s.add_argument("--python", default="", help="default: this Python")
  return p


def steps_for(argv: list[str]) -> tuple[argparse.Namespace, list[Step]]:
  a, extra = parser().parse_known_args(argv)
  overrides = _overrides(extra)
  if a.target in ("tpu_vm", "tpu_pod"):
    return a, tpu_steps(a, a.target, overrides)
  if a.target == "gpu":
    return a, gpu_steps(a, overrides)
  return a, local_steps(a, overrides)


def main(argv: list[str] | None = None) -> int:
  try:
    a, steps = steps_for(sys.argv[1:] if argv is None else argv)
  except ClowlabError as e:
    print(e, file=sys.stderr)
    return 2
  if a.dry_run:
    for s in steps:
      print(s.line())
    return 0
  if any(s.argv[:2] == ["git", "-C"] for s in steps):
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    if dirty:
      print("clowlab launch: warning: uncommitted changes are not shipped (the remote machine "
            "gets the committed HEAD).", file=sys.stderr)
  return execute(steps)


if __name__ == "__main__":
  sys.exit(main())
