"""InfoXLM cross-lingual pretraining: MMLM + TLM + XLCo (docs/methods/infoxlm.md). Variants:
  ''          the TPU-pod setup: XLM-R-base size (12 x 768) from scratch with a 64k sentencepiece
              vocabulary (or --config.init_from=<XLM-R-family HF dir>), mesh fsdp over all chips
              (e.g. v5e-64 / v4-64), global batch 2048 monolingual sequences of 256 tokens +
              1024 translation pairs, queue 131,072 keys, momentum 0.9999, XLCo at layer 8,
              150k steps. On a machine without an accelerator it stops with one line that
              names the runlocal variant.
  'runlocal'  a 2 x 128 model on the embedded demo text (English/Chinese/German + pairs):
              minutes on a 2-core CPU.
  'small_start' the CPU evidence's starting checkpoint: 4 x 128, MMLM + TLM from scratch on every
              language in ../shared/data (Tatoeba test sentences removed), 2500 steps.
  'small'     InfoXLM (MMLM + TLM + XLCo) continued from small_start for 1500 steps
              (--config.init_from=<small_start workdir>), evaluated on Tatoeba and
              cross-lingual STS-B.
  'small_noxlco' the same without XLCo (MMLM + TLM): the ablation.
Data keys: data.mono (LANG:PATH[#COLUMN]), data.parallel (SRC-TGT:PATH[|PATH][#COLS]),
data.exclude (sentences removed from training), data.alpha (language exponent); see
clowlab/data/multilingual.py.
"""
import glob
import os

import ml_collections

from configs import common

DEMO = os.path.join(os.path.dirname(__file__), "..", "clowlab", "demo_data")
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
STSB_LANGS = ("de", "es", "fr", "it", "ja", "nl", "pl", "pt", "ru", "zh")
TATOEBA_LANGS = ("ara", "cmn", "deu", "fra", "hin", "jpn", "rus", "spa")


def shared_sources():
  """Monolingual text, translation pairs and excluded test sentences in ../shared/data."""
  s = lambda *p: os.path.join(SHARED, *p)
  mono = [f"en:{s('wikitext2', 'valid.txt')}", f"en:{s('wikitext2', 'test.txt')}",
          f"zh:{s('zh_text', 'waimai_10k.csv')}#review",
          f"zh:{s('zh_text', 'ChnSentiCorp_htl_all.csv')}#review",
          f"zh:{s('zh_text', 'online_shopping_10_cats.csv.gz')}#review"]
  parallel = [f"en-zh:{s('parallel', 'en_zh_manythings', 'cmn.txt')}"]
  parallel += [f"en-{x}:{s('parallel', 'multi30k', 'train.en.gz')}|"
               f"{s('parallel', 'multi30k', f'train.{x}.gz')}" for x in ("de", "fr", "cs")]
  # Translated STS-B train only: dev/test stay unseen for the cross-lingual STS evaluation.
  parallel += [f"en-{x}:{s('stsb_multi_mt', 'stsb-en-train.csv')}|"
               f"{s('stsb_multi_mt', f'stsb-{x}-train.csv')}#0,1" for x in STSB_LANGS]
  exclude = sorted(glob.glob(s("tatoeba", "tatoeba.*-eng.*")))
  return mono, parallel, exclude

VARIANTS = ("", "runlocal", "small_start", "small", "small_noxlco")  # get_config args


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = common.get_config()
  c.method = "infoxlm"
  c.accelerator_required = (
      "clowlab: configs/infoxlm.py (default) is the TPU-pod setup (12x768, global batch "
      "2048 + 1024 pairs, queue 131072, 150k steps) and this machine has only CPU devices: run "
      "--config=configs/infoxlm.py:runlocal (minutes on CPU) or :small, or pass "
      "--config.accelerator_required='' to run the pod config here anyway.")
  c.total_steps, c.batch_size, c.seq_len = 150_000, 2048, 256
  c.checkpoint_every = 2000
  c.tokenizer = "spm:64000"
  c.model = ml_collections.ConfigDict({
      "hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072,
      "max_position_embeddings": 512, "compute_dtype": "bfloat16", "remat": True})
  c.mlm = ml_collections.ConfigDict({"mask_prob": 0.15, "whole_word": False,
                                     "max_predictions": 0})
  mono, parallel, exclude = shared_sources()
  c.data = ml_collections.ConfigDict({
      "mono": mono, "parallel": parallel, "exclude": exclude, "mono_from_parallel": True,
      "alpha": 0.7})
  c.infoxlm = ml_collections.ConfigDict({
      "mmlm_weight": 1.0, "tlm_weight": 1.0, "xlco_weight": 1.0,
      "parallel_batch_size": 1024,
      "tlm_reset_positions": True,
      "xlco_layer": 8,            # hidden layer whose CLS is the sentence vector (-1 = last)
      "xlco_pooling": "cls",      # cls (the paper) | mean
      "proj_dim": 0,              # 0 = hidden size
      "temperature": 0.1, "normalize": True,
      "momentum": 0.9999, "queue_size": 131_072, "xlco_swap": True,
      "eval_layer": 0,            # 0 = xlco_layer
      "eval_pooling": "mean"})    # mean | cls
  c.eval = ml_collections.ConfigDict({
      "tatoeba_dir": os.path.join(SHARED, "tatoeba"), "tatoeba_languages": [],
      "xsts_dir": os.path.join(SHARED, "stsb_multi_mt"),
      "xsts_pairs": ["en-zh", "en-de", "en-es", "en-fr", "en-ru"], "xsts_split": "test",
      "batch_size": 64})
  c.optim.lr, c.optim.warmup_steps = 2e-4, 10_000
  c.mode = "train_and_eval"
  c.eval_every = 10_000
  if arg == "runlocal":
    c.accelerator_required = ""
    c.total_steps, c.batch_size, c.seq_len = 120, 16, 48
    c.checkpoint_every, c.log_every, c.eval_every = 60, 10, 0
    c.tokenizer = "spm:3000"
    d = lambda f: os.path.join(DEMO, f)
    c.data.mono = [f"en:{d('en_wikitext2.txt')}", f"zh:{d('zh_sentences.txt')}"]
    c.data.parallel = [f"en-de:{d('parallel_en_de.tsv')}#en,de",
                       f"en-zh:{d('parallel_en_zh.tsv')}#en,zh"]
    # 190 zh / 131 en sentences of the parallel demo files are in the demo STS sets that the
    # retrieval and STS evaluation below use: their pairs are not trained on.
    c.data.exclude = [f"{d(f)}#{col}" for f in ("sts_en_dev.csv", "sts_zh_dev.csv")
                      for col in ("sentence1", "sentence2")]
    c.model = ml_collections.ConfigDict({
        "hidden_size": 128, "num_layers": 2, "num_heads": 2, "intermediate_size": 512,
        "max_position_embeddings": 64, "compute_dtype": "float32", "remat": False,
        "scan_layers": False})
    c.infoxlm.update({"parallel_batch_size": 16, "xlco_layer": -1, "momentum": 0.99,
                      "queue_size": 256})
    # The demo STS sets are row-aligned translations (STS-B dev): en-zh retrieval and STS.
    c.eval = ml_collections.ConfigDict({
        "tatoeba_dir": "", "tatoeba_languages": [], "xsts_dir": "", "xsts_pairs": [],
        "xsts_split": "dev", "batch_size": 64,
        "bitext": [f"zh-en:{d('sts_zh_dev.csv')}|{d('sts_en_dev.csv')}#sentence1"],
        "xsts": [f"en-zh:{d('sts_en_dev.csv')}|{d('sts_zh_dev.csv')}"]})
    c.optim.lr, c.optim.warmup_steps = 1e-3, 20
  elif arg in ("small_start", "small", "small_noxlco"):
    # The CPU evidence (docs/results.md): 'small_start' pretrains MMLM + TLM from scratch (the
    # stand-in for the XLM-R checkpoint InfoXLM starts from); 'small' and 'small_noxlco'
    # continue from it (--config.init_from=<small_start workdir>) for the same steps with and
    # without XLCo.
    c.accelerator_required = ""
    c.total_steps, c.batch_size, c.seq_len = 1500, 32, 64
    c.checkpoint_every, c.log_every, c.eval_every = 500, 20, 0
    c.tokenizer = "spm:16000"
    c.model = ml_collections.ConfigDict({
        "hidden_size": 128, "num_layers": 4, "num_heads": 2, "intermediate_size": 512,
        "max_position_embeddings": 128, "compute_dtype": "float32", "remat": False,
        "scan_layers": False})
    c.infoxlm.update({"parallel_batch_size": 32, "xlco_layer": 3, "momentum": 0.995,
                      "queue_size": 4096})
    c.optim.lr, c.optim.warmup_steps, c.optim.schedule = 5e-4, 100, "constant"
    if arg == "small_start":
      c.total_steps, c.optim.warmup_steps = 2500, 300
      c.infoxlm.xlco_weight = 0.0
    if arg == "small_noxlco":
      c.infoxlm.xlco_weight = 0.0
  elif arg:
    raise ValueError(f"configs/infoxlm.py: unknown variant {arg!r}; valid: '', runlocal, "
                     "small_start, small, small_noxlco")
  return c
