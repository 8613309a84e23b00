#!/bin/bash
# Issue 9 (CLOWER): char-MLM-only vs CLOWER from scratch, same data / masks / steps, seeds 0-2;
# then LCQMC finetuning of every run through the finetuning harness. RUNS defaults to runs/c9.
# Figures: python docs/evidence/table9.py RUNS
set -euo pipefail
RUNS=${RUNS:-runs/c9}
SHARED=${SHARED:-../shared/data}
mkdir -p "$RUNS"
for seed in 0 1 2; do
  for v in small_mlm small; do
    w=$RUNS/${v}_s$seed
    [ -f "$w/done" ] && continue
    python -m clowlab.main --config=configs/clower.py:$v --workdir="$w" \
      --config.cache_dir="$RUNS/cache" --config.seed=$seed --config.progress_bar=False \
      > "$w.log" 2>&1
    touch "$w/done"
  done
done
# The word-char weight at 0.3 (seed 0).
w=$RUNS/small_w03_s0
if [ ! -f "$w/done" ]; then
  python -m clowlab.main --config=configs/clower.py:small --workdir="$w" \
    --config.cache_dir="$RUNS/cache" --config.seed=0 --config.clower.word_weight=0.3 \
    --config.progress_bar=False > "$w.log" 2>&1
  touch "$w/done"
fi
# Matching accuracy: finetune on LCQMC dev (first 4000 pairs), test on LCQMC test.
for w in "$RUNS"/small*_s[0-9]; do
  out=$w.lcqmc.json
  [ -s "$out" ] && continue
  python -m clowlab.evaluate --task=classification --model="$w" \
    --train="$SHARED/zh_eval/lcqmc/lcqmc_dev.tsv" --dev="$SHARED/zh_eval/lcqmc/lcqmc_test.tsv" \
    --columns=text_a,text_b,label --max_train_examples=4000 --epochs=2 --learning_rate=1e-4 \
    --batch_size=32 --seq_len=64 --seed=0 | tail -1 > "$out"
done
