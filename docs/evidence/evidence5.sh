#!/bin/bash
# Issue 5 evidence: raw MLM encoder -> SimCSE vs layer-wise attention, same start and budget.
set -e
cd "$(dirname "$0")/../.."
P=${PYTHON:-python}
S=../shared/data/stsb_multi_mt
START=${START:-runs/mlm_en_small}
for split in dev test; do
  for pool in cls_before_pooler mean; do
    echo "== before: $split $pool"
    $P -m clowlab.evaluate --task=sts --model=$START --data=$S/stsb-en-$split.csv --columns=0,1,2 --pooling=$pool --seq_len=64 2>/dev/null | tail -1
  done
done
for m in simcse layer_attention; do
  echo "== train $m"
  /usr/bin/time -f "wall %e s" $P -m clowlab.main --config=configs/$m.py:en_small --workdir=runs/${m}_en_small --config.init_from=$START --config.progress_bar=False 2>&1 | grep -v "examples/s\|^$\|WARNING\|W1127" | tail -12
  for split in dev test; do
    echo "== after $m: $split (method's own pooling)"
    $P -m clowlab.evaluate --task=sts --model=runs/${m}_en_small --data=$S/stsb-en-$split.csv --columns=0,1,2 --seq_len=64 2>/dev/null | tail -1
  done
done
