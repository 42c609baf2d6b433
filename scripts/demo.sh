#!/usr/bin/env bash
# The main job on embedded defaults (no GPU, no TGI): set up, start a local Apache Kafka broker, a model worker
# (the embedded engine with the shipped model) and the stream service; feed examples/documents.jsonl to the
# input topic; print the entity records from the output topic and the dead letter; stop what it started.
# MODEL_SERVER=vllm: the same through a real vLLM server (its CPU build, scripts/vllm.sh; installed once, about
# 6 GB) and a worker on the vllm backend.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
CLI=.venv/bin/padellm-ner
RUN=$(mktemp -d)
STAMP=$(date +%s)
IN=documents-$STAMP OUT=entity-records-$STAMP
PIDS=()
STARTED_KAFKA=0 STARTED_VLLM=0
MODEL_SERVER=${MODEL_SERVER:-embedded}
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$STARTED_KAFKA" = 1 ]; then bash scripts/kafka.sh stop; fi
  if [ "$STARTED_VLLM" = 1 ]; then bash scripts/vllm.sh stop; fi
}
trap cleanup EXIT

if ! bash scripts/kafka.sh status >/dev/null 2>&1; then bash scripts/kafka.sh start; STARTED_KAFKA=1; fi
case "$MODEL_SERVER" in
  embedded) WORKER_ARGS=() ;;
  vllm)
    if ! bash scripts/vllm.sh status >/dev/null 2>&1; then bash scripts/vllm.sh start; STARTED_VLLM=1; fi
    eval "$(bash scripts/vllm.sh env)"
    WORKER_ARGS=(--backend vllm --vllm-url "$VLLM_URL" --vllm-model "$VLLM_MODEL" --model models/padellm-conll03) ;;
  *) echo "demo: MODEL_SERVER is embedded or vllm, not $MODEL_SERVER" >&2; exit 2 ;;
esac

wait_ready() {  # a process prints one "... ready ..." line on stdout when it serves
  for _ in $(seq 1 240); do grep -q "ready" "$1" 2>/dev/null && return 0; sleep 0.5; done
  echo "demo: $1 did not become ready" >&2; cat "$1" >&2; return 1
}

PADELLM_LOG_FORMAT=text $CLI worker --port 50061 "${WORKER_ARGS[@]}" > "$RUN/worker.out" 2> "$RUN/worker.log" & PIDS+=($!)
wait_ready "$RUN/worker.out"
PADELLM_LOG_FORMAT=text $CLI stream --bootstrap 127.0.0.1:9092 --input-topic "$IN" --output-topic "$OUT" \
  --workers 127.0.0.1:50061 --create-topics --partitions 2 --group-id demo-$$ > "$RUN/stream.out" 2> "$RUN/stream.log" & PIDS+=($!)
wait_ready "$RUN/stream.out"

echo "== feeding examples/documents.jsonl to topic '$IN'"
$CLI kafka produce examples/documents.jsonl --topic "$IN"
echo "== entity records on topic '$OUT'"
$CLI kafka consume --topic "$OUT" --count "$(grep -c '^{' examples/documents.jsonl)" --pretty
echo "== dead letters on topic '$IN.dead-letter'"
$CLI kafka consume --topic "$IN.dead-letter" --count 1
