#!/bin/bash
# Issue 7: MLM vs ELECTRA vs COCO-LM from scratch, same model size (4 x 128), data (wikitext-2
# valid + Multi30k English), tokenizer (spm:8000 trained on that data) and wall-clock budget
# (configs/<m>.py:compare, max_train_seconds). The three run at the same time so that any other
# load on the machine hits all of them alike.
cd "$(dirname "$0")/../.."
P=${PYTHON:-python}
BUDGET=${BUDGET:-2400}
for m in mlm electra coco_lm; do
  rm -rf runs/compare_$m
  $P -m clowlab.main --config=configs/$m.py:compare --workdir=runs/compare_$m \
    --config.max_train_seconds=$BUDGET --config.progress_bar=False > runs/compare_$m.log 2>&1 &
done
wait
for m in mlm electra coco_lm; do grep "clowlab:" runs/compare_$m.log; done
