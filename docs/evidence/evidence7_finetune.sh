#!/bin/bash
# Issue 7: finetune each pretrained model of evidence7_pretrain.sh (MLM, ELECTRA, COCO-LM) on
# GLUE SST-2 (8,000 training sentences, 2 epochs) and RTE (3 epochs) with seeds 0 1 2, the same
# hyperparameters for all; seed-major, so a cut-short run still has every model at the same
# seeds; existing results are kept (re-run to fill in). TASKS="sst2 rte stsb" adds STS-B.
cd "$(dirname "$0")/../.."
P=${PYTHON:-python}
G=../shared/data/glue
SEEDS=${SEEDS:-"0 1 2"}
TASKS=${TASKS:-"sst2 rte"}
mkdir -p runs/finetune7
common="--learning_rate=1e-4 --batch_size=32 --seq_len=64"
for seed in $SEEDS; do
  for m in mlm electra coco_lm; do
    for t in $TASKS; do
      out=runs/finetune7/${m}_${t}_$seed.json
      [ -s "$out" ] && continue
      case $t in
        sst2) args="--train=$G/SST-2/train.tsv --dev=$G/SST-2/dev.tsv --columns=sentence,label --max_train_examples=8000 --epochs=2" ;;
        rte) args="--train=$G/RTE/train.tsv --dev=$G/RTE/dev.tsv --columns=sentence1,sentence2,label --epochs=3" ;;
        stsb) args="--train=$G/STS-B/train.tsv --dev=$G/STS-B/dev.tsv --columns=sentence1,sentence2,score --regression --epochs=3" ;;
      esac
      $P -m clowlab.evaluate --task=classification --model=runs/compare_$m $args $common \
        --seed=$seed 2>/dev/null | tail -1 > $out.tmp && mv $out.tmp $out
      echo "$m $t seed $seed: $(cut -c1-80 $out)"
    done
  done
done
$P docs/evidence/table7.py runs/finetune7
