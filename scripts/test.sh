#!/usr/bin/env bash
# Set up and run the whole test suite. Extra arguments go to pytest (e.g. -k dedup, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
