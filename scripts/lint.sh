#!/usr/bin/env bash
# Static checks, run by .ci/run before the tests: ruff (lint and format), mypy, the import contracts, and buf
# (lint of the gRPC contract, and breaking changes against the previous commit's contract).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
bash scripts/buf.sh
