#!/bin/bash
# LoRA (trained directly) against full fine-tuning + the shipped export, at equal training minutes; see decision.txt.
# Order: F to 15 min, L to 15 min, their evals; then both resumed to 30 min, their evals (the first pair is
# complete first). Run folders sit in the cache so that a later session on the same host can go on.
set -euo pipefail
cd /work/main
P=.venv/bin/padellm-ner
D=/tmp/s8/lora
R=~/.cache/padellm-ner/runs/lora-vs-full
mkdir -p $R
DATA=../shared/datasets/conll2003/original/train.txt
COMMON="--data $DATA --schema conll03 --objective padellm --epochs 2 --warmup-steps 30 --rows-per-step 8 --row-tokens 256
 --seed 1234 --oversample-min-mentions 4 --oversample-times 4 --no-bf16 --time-budget 15 --checkpoint-minutes 60"
for cut in ${CUTS:-15 30}; do
  for arm in F L; do
    if [ $arm = F ]; then ARGS="--method full --lr 1.5e-4"; EXPORT="--form lowrank-int4 --rank 152 --rank-allocation energy"
    else ARGS="--method lora --lora-rank 40 --lora-alpha 32 --lr 1.5e-3"; EXPORT="--form lora"; fi
    echo "== train $arm to $cut min $(date -u +%T)"
    $P train $COMMON $ARGS --output $R/run$arm > $D/train-$arm$cut.log 2>&1
    $P export --run $R/run$arm --output $D/$arm$cut $EXPORT
    cp $R/run$arm/log.jsonl $D/$arm$cut/train-log.jsonl
  done
  for m in F$cut L$cut; do
    echo "== eval $m $(date -u +%T)"
    $P eval --model $D/$m --data ../shared/datasets/conll2003/original/valid.txt --sample 300 --seed 3 \
       --predictions $D/$m/dev300.jsonl --json > $D/$m/dev300.json
  done
done
echo "== done $(date -u +%T)"
