#!/bin/bash
# After the run of decision.txt: export it in the shipped form, predict the whole CoNLL-2003 test set as two
# single-threaded halves side by side (AutoReg_Struct decodes at batch 1, which a second thread barely speeds
# up), join and score them, and pair them with the shipped PaDeLLM model's whole-test predictions.
# Then, as decision.txt rules (no gate), ship it as the baseline (models/autoreg-struct-conll03: weights and
# padellm.json; its model card is edited by hand) and run `bench` on the seeded 600 against it.
# Usage: bash run.sh RUN PADELLM_TEST_PREDICTIONS WORK
#   RUN: the run folder; PADELLM_TEST_PREDICTIONS: `padellm-ner eval --data test.txt --predictions` of the
#   shipped PaDeLLM model; WORK: where the model and the predictions go (not committed). Reports land here.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../../../.."
RUN=$1 PADELLM=$2 WORK=$3
P=.venv/bin/padellm-ner
PY=.venv/bin/python
TEST=../shared/datasets/conll2003/original/test.txt
HALVES=$HERE/../autoreg-struct-test-full
mkdir -p "$WORK"
[ -f "$WORK/model/padellm.json" ] ||
  $P export --run "$RUN" --output "$WORK/model" --form lowrank-int4 --rank 152 --rank-allocation energy
cp "$WORK/model/padellm.json" "$HERE/padellm.json"
OFFSET=$($PY "$HALVES/split.py" $TEST "$WORK/A" "$WORK/B")
echo "first half: $OFFSET sentences; evaluating both halves side by side ($(date -u +%H:%M))"
PADELLM_THREADS=1 $P eval --model "$WORK/model" --data "$WORK/A/test.txt" --predictions "$WORK/a.jsonl" \
  --json > "$HERE/eval-first-half.json" 2> "$WORK/a.log" &
FIRST=$!
PADELLM_THREADS=1 $P eval --model "$WORK/model" --data "$WORK/B/test.txt" --predictions "$WORK/b.jsonl" \
  --json > "$HERE/eval-second-half.json" 2> "$WORK/b.log"
wait $FIRST
echo "both halves done ($(date -u +%H:%M))"
$PY "$HALVES/merge.py" "$WORK/a.jsonl" "$WORK/b.jsonl" "$OFFSET" "$PADELLM" "$WORK/test.jsonl"
$P score --pred "$WORK/test.jsonl" --gold $TEST --bootstrap 1000 --json > "$HERE/scores.json"
$P score --pred "$PADELLM" --gold $TEST --against "$WORK/test.jsonl" --bootstrap 1000 --json \
  > "$HERE/paired-padellm-vs-autoreg-struct.json"
$PY "$HERE/../mention-replacement/seen.py" "$WORK/test.jsonl" $TEST --json "$HERE/test-full-seen.json"
$PY - "$HERE" <<'PY'
import json, sys
here = sys.argv[1]
p = json.load(open(f"{here}/paired-padellm-vs-autoreg-struct.json"))
a, d = p["against"], p["against"]["paired"]["difference"]
print(f"AutoReg_Struct (continued): {100 * a['micro_f1']:.2f}  P {100 * a['precision']:.2f}  R {100 * a['recall']:.2f}")
print(f"PaDeLLM (shipped):          {100 * p['micro_f1']:.2f}  P {100 * p['precision']:.2f}  R {100 * p['recall']:.2f}")
print(f"PaDeLLM - AutoReg_Struct:   {100 * d['estimate']:+.2f}  (paired 95 % interval {100 * d['low']:+.2f} to "
      f"{100 * d['high']:+.2f}; target: no lower than -0.50)")
PY

echo "shipping it as models/autoreg-struct-conll03; bench on the seeded 600 ($(date -u +%H:%M))"
cp "$WORK/model/delta_lowrank.safetensors" "$WORK/model/padellm.json" models/autoreg-struct-conll03/
sha256sum models/autoreg-struct-conll03/delta_lowrank.safetensors
$P bench --data $TEST --sample 600 --seed 0 --baseline-model models/autoreg-struct-conll03 \
  --output-dir "$HERE/sample600" --json > "$WORK/bench-stdout.json"
echo "done ($(date -u +%H:%M))"
