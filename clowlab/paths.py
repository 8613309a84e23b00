"""Workdir paths: a local directory, or a remote one (`gs://bucket/run`) through etils.epath.

    paths.is_remote("gs://b/run")      # True: any "<scheme>://" path
    paths.normalize(workdir)           # local: absolute path (as before); remote: no trailing /
    paths.path(workdir) / "metrics.jsonl"   # pathlib.Path (local) or epath.Path (remote)
    paths.local_dir(workdir)           # a remote workdir's local-only files (see below)

A remote workdir holds what a local one holds (checkpoints through orbax/tensorstore, the
tokenizer, metrics.jsonl, tb/, the lock); its I/O goes through epath (fsspec: gcsfs for gs://).
What cannot live on object storage stays in a local directory, `local_dir(workdir)`:
`$CLOWLAB_CACHE/runs/<hash of the workdir>` (default `~/.cache/clowlab/runs/...`): the data
cache (`cache/`, unless config.cache_dir says otherwise), a copy of the tokenizer (HF and
sentencepiece tokenizers load only from local files) and the metrics files between uploads
(object storage has no append; see metrics.Writer).
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import tempfile

from etils import epath

from clowlab.errors import ClowlabError


def is_remote(path: str | os.PathLike) -> bool:
  return "://" in os.fspath(path)


def normalize(workdir: str | os.PathLike) -> str:
  """A local workdir as an absolute path; a remote one as given, without a trailing slash."""
  s = os.fspath(workdir)
  if not is_remote(s):
    return os.path.abspath(s)
  scheme, _, rest = s.partition("://")
  if not rest.strip("/"):
    raise ClowlabError(f"clowlab: --workdir={s} names no bucket. Pass {scheme}://BUCKET/RUN.")
  return s.rstrip("/")


def path(p: str | os.PathLike) -> pathlib.Path | epath.Path:
  """epath.Path for a remote path, pathlib.Path for a local one (unchanged behaviour)."""
  s = os.fspath(p)
  return epath.Path(s) if is_remote(s) else pathlib.Path(s)


def cache_root() -> str:
  """$CLOWLAB_CACHE, else $XDG_CACHE_HOME/clowlab, else ~/.cache/clowlab: the root of every
  clowlab cache (datasets, jieba, remote workdirs' local files)."""
  return os.environ.get("CLOWLAB_CACHE") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
      "clowlab")


def local_dir(workdir: str | os.PathLike) -> str:
  """The local directory of a remote workdir (created; a WORKDIR file names the remote one).
  A local workdir is its own local directory."""
  s = os.fspath(workdir)
  if not is_remote(s):
    return s
  s = normalize(s)
  d = os.path.join(cache_root(), "runs", hashlib.sha256(s.encode()).hexdigest()[:16])
  os.makedirs(d, exist_ok=True)
  marker = os.path.join(d, "WORKDIR")
  if not os.path.exists(marker):
    with open(marker, "w", encoding="utf-8") as f:
      f.write(s + "\n")
  return d


def default_cache_dir(workdir: str | os.PathLike) -> str:
  """config.cache_dir's default: <workdir>/cache, or <local_dir>/cache for a remote workdir."""
  return os.path.join(local_dir(workdir), "cache")


def upload_tree(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """Copies the files under local directory `src` to `dst` (any epath), keeping the layout."""
  src, dst = pathlib.Path(src), epath.Path(dst)
  dst.mkdir(parents=True, exist_ok=True)
  for f in sorted(src.rglob("*")):
    if f.is_file():
      target = dst / f.relative_to(src).as_posix()
      target.parent.mkdir(parents=True, exist_ok=True)
      target.write_bytes(f.read_bytes())


def download_tree(src: str | os.PathLike, dst: str | os.PathLike) -> str:
  """Replaces local directory `dst` with a copy of the files under `src` (any epath); the copy
  is made next to it and renamed into place, so a reader never sees half of it."""
  src = epath.Path(src)
  parent = os.path.dirname(os.path.abspath(dst))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=os.path.basename(dst) + ".", dir=parent)
  def copy(d, out):  # epath's walk/rglob do not list gs:// paths recursively
    for p in d.iterdir():
      if p.is_dir():
        os.makedirs(os.path.join(out, p.name), exist_ok=True)
        copy(p, os.path.join(out, p.name))
      else:
        with open(os.path.join(out, p.name), "wb") as f:
          f.write(p.read_bytes())

  try:
    copy(src, tmp)
    if os.path.isdir(dst):
      shutil.rmtree(dst)
    os.replace(tmp, dst)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return os.fspath(dst)
