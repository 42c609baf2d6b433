#!/bin/bash
# After the run of decision.txt: export it in the shipped form, predict the whole dev set, and score it against
# the shipped model on the gate's parts (the whole set, the seeded sample of 800, the other 2,450), with the
# seen/unseen split. Usage: bash judge.sh RUN SHIPPED_DEV_PREDICTIONS WORK
#   RUN: the run folder; SHIPPED_DEV_PREDICTIONS: `padellm-ner eval --data valid.txt --predictions` of the
#   shipped model; WORK: where the model and the predictions go (not committed). Reports land in this folder.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../../../.."
RUN=$1 SHIPPED=$2 WORK=$3
P=.venv/bin/padellm-ner
VALID=../shared/datasets/conll2003/original/valid.txt
mkdir -p "$WORK"
$P export --run "$RUN" --output "$WORK/model" --form lowrank-int4 --rank 152 --rank-allocation energy
cp "$WORK/model/padellm.json" "$HERE/padellm.json"
cp "$RUN/log.jsonl" "$WORK/train-log.jsonl"
$P eval --model "$WORK/model" --data $VALID --predictions "$WORK/dev.jsonl" --json > "$HERE/dev-full.json"
.venv/bin/python "$HERE/../4.00-epochs-longlist-continuation-not-shipped/split.py" "$WORK/dev.jsonl" "$WORK/dev"
.venv/bin/python "$HERE/../4.00-epochs-longlist-continuation-not-shipped/split.py" "$SHIPPED" "$WORK/shipped"
$P score --pred "$WORK/dev.jsonl" --gold $VALID --against "$SHIPPED" --bootstrap 1000 --json \
  > "$HERE/dev-full-paired-vs-shipped.json"
for part in s800 rest; do
  $P score --pred "$WORK/dev-$part.jsonl" --gold $VALID --against "$WORK/shipped-$part.jsonl" --bootstrap 1000 \
    --json > "$HERE/dev-$part-paired-vs-shipped.json"
done
.venv/bin/python "$HERE/seen.py" "$WORK/dev.jsonl" $VALID --json "$HERE/dev-full-seen.json"
