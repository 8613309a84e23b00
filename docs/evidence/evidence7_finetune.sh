#!/bin/bash
# Issue 7: finetune each pretrained model of evidence7_pretrain.sh (MLM, ELECTRA, COCO-LM) on
# three GLUE tasks with three seeds each, same hyperparameters for all; then summarise.
cd "$(dirname "$0")/../.."
P=${PYTHON:-python}
G=../shared/data/glue
SEEDS=${SEEDS:-"0 1 2"}
mkdir -p runs/finetune7
for m in mlm electra coco_lm; do
  for seed in $SEEDS; do
    $P -m clowlab.evaluate --task=classification --model=runs/compare_$m --train=$G/SST-2/train.tsv \
      --dev=$G/SST-2/dev.tsv --columns=sentence,label --max_train_examples=8000 --epochs=2 \
      --learning_rate=1e-4 --batch_size=32 --seq_len=64 --seed=$seed 2>/dev/null | tail -1 \
      > runs/finetune7/${m}_sst2_$seed.json
    $P -m clowlab.evaluate --task=classification --model=runs/compare_$m --train=$G/RTE/train.tsv \
      --dev=$G/RTE/dev.tsv --columns=sentence1,sentence2,label --epochs=3 \
      --learning_rate=1e-4 --batch_size=32 --seq_len=64 --seed=$seed 2>/dev/null | tail -1 \
      > runs/finetune7/${m}_rte_$seed.json
    $P -m clowlab.evaluate --task=classification --model=runs/compare_$m --train=$G/STS-B/train.tsv \
      --dev=$G/STS-B/dev.tsv --columns=sentence1,sentence2,score --regression --epochs=3 \
      --learning_rate=1e-4 --batch_size=32 --seq_len=64 --seed=$seed 2>/dev/null | tail -1 \
      > runs/finetune7/${m}_stsb_$seed.json
    echo "$m seed $seed done"
  done
done
$P docs/evidence/table7.py runs/finetune7
