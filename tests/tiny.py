"""A tiny MLM run config for engine tests (imports no conftest: the multi-process worker uses it
with its own device count)."""
import pathlib
import shutil
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "clowlab" / "demo_data"
sys.path.insert(0, str(REPO))
from configs import mlm as mlm_config  # noqa: E402


def tiny_cfg(**kw):
  c = mlm_config.get_config("runlocal")
  c.total_steps, c.batch_size, c.seq_len = 6, 16, 32
  c.checkpoint_every, c.log_every, c.eval_every = 3, 1, 0
  c.mode, c.progress_bar, c.async_checkpoint = "train", False, False
  c.tokenizer = "spm:600"
  c.model.hidden_size, c.model.num_layers, c.model.num_heads = 32, 1, 2
  c.model.intermediate_size, c.model.max_position_embeddings = 64, 32
  c.optim.warmup_steps = 2
  c.data.train = [str(DEMO_DATA / "en_wikitext2.txt")]
  c.mesh = {"data": 2, "fsdp": 4}
  return override(c, **kw)


def override(c, **kw):
  """Sets dotted keys ("optim.lr"=...) on a ConfigDict, as --config.optim.lr would; returns c."""
  for k, v in kw.items():
    node = c
    *parents, leaf = k.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = v
  return c


def workdir_with_tokenizer(tmp_path, name, tok_dir):
  """A fresh workdir holding a copy of an already trained tokenizer (no spm training per run)."""
  w = tmp_path / name
  w.mkdir()
  shutil.copytree(tok_dir, w / "tokenizer")
  return str(w)
