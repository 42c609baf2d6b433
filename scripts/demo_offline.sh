#!/usr/bin/env bash
# The data and scoring commands on the bundled example (a small CoNLL file and a results file in the official
# PaDeLLM-NER format): corpus statistics, reformulation into training examples, scoring with each de-duplication.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
run() { echo; echo "\$ padellm-ner $*"; .venv/bin/padellm-ner "$@"; }
run data stats examples/sample.conll
run data reformulate examples/sample.conll --schema conll03 -o /tmp/padellm-ner-examples.jsonl
echo "($(wc -l < /tmp/padellm-ner-examples.jsonl) training examples; the first:)"
head -n 1 /tmp/padellm-ner-examples.jsonl
run score --pred examples/sample_results.json --dedup none
run score --pred examples/sample_results.json --dedup keep-max
run score --pred examples/sample_results.json --gold examples/sample.conll --metric span
