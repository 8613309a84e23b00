#!/usr/bin/env bash
# Issue 8 evidence: InfoXLM vs the same continuation without XLCo, from one MMLM + TLM start.
#   bash docs/evidence/evidence8.sh [RUNS_DIR]      (default runs/; ~70 min on 2 CPU cores)
# 1. small_start: MMLM + TLM from scratch, 2500 steps (the stand-in for XLM-R).
# 2. small / small_noxlco: 1500 more steps each from that checkpoint, with / without XLCo
#    (same batches: 32 monolingual rows + 32 pairs per step, same data order and seed).
# 3. Tatoeba (8 languages, both directions) and cross-lingual STS-B test (en-xx) of all three,
#    layer 3 of 4 (the XLCo layer) by mean and by CLS; JSON lines in RUNS/ix_eval/.
# Table: python docs/evidence/table8.py RUNS/ix_eval
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${1:-runs}
S=../shared/data
mkdir -p "$R/ix_eval"
common=(--config.progress_bar=False --config.cache_dir="$R/ix_cache")
run() {  # variant workdir [extra flags]
  local v=$1 w=$2; shift 2
  [ -f "$w/.done" ] && return
  ( time python -m clowlab.main --config=configs/infoxlm.py:"$v" --workdir="$w" "${common[@]}" "$@" ) \
    > "$w.log" 2>&1
  touch "$w/.done"
}
run small_start "$R/ix_s0" --config.mode=train
# The continuations share the start's tokenizer (init_from copies it); seed 1: a new data
# order and new masks (seed 0 would replay the start run's first batches).
run small "$R/ix_x" --config.init_from="$R/ix_s0" --config.tokenizer="" --config.model='{}' --config.mode=train --config.seed=1
run small_noxlco "$R/ix_n" --config.init_from="$R/ix_s0" --config.tokenizer="" --config.model='{}' --config.mode=train --config.seed=1
for m in ix_s0 ix_x ix_n; do
  for pool in mean cls; do
    python -m clowlab.evaluate --task=tatoeba --model="$R/$m" --data=$S/tatoeba --layer=3 \
      --pooling=$pool | tail -1 > "$R/ix_eval/${m}_tatoeba_$pool.json"
    python -m clowlab.evaluate --task=xsts --model="$R/$m" --data=$S/stsb_multi_mt --layer=3 \
      --pooling=$pool --pairs=en-zh,en-de,en-es,en-fr,en-ru,en-ja \
      | tail -1 > "$R/ix_eval/${m}_xsts_$pool.json"
  done
done
python docs/evidence/table8.py "$R/ix_eval"
