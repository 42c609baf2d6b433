#!/usr/bin/env bash
# Generate the Python gRPC code from proto/ (run by setup.sh). The generated package `padellm.v1` mirrors the
# proto package; it is never committed (.gitignore) and never edited by hand. PYTHON: the interpreter with
# grpcio-tools (default .venv/bin/python; the Dockerfiles name the image's).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
rm -rf padellm
mkdir -p padellm/v1
"$PYTHON" -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. \
  proto/padellm/v1/types.proto proto/padellm/v1/worker.proto proto/padellm/v1/ner.proto
touch padellm/__init__.py padellm/v1/__init__.py
