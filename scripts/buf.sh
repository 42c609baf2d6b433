#!/usr/bin/env bash
# buf on proto/ (pinned in scripts/buf/package-lock.json, installed from npm): `buf lint` (STANDARD rules) and
# `buf breaking` against the contract of the previous commit. The contract is stable from the commit that added
# proto/buf.yaml on; a previous commit without it has no contract to break.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x scripts/buf/node_modules/.bin/buf ]; then
  npm ci --prefix scripts/buf --no-audit --no-fund --loglevel=error >/dev/null
fi
BUF=scripts/buf/node_modules/.bin/buf
"$BUF" lint proto
if git rev-parse --verify --quiet HEAD~1 >/dev/null && git cat-file -e HEAD~1:proto/buf.yaml 2>/dev/null; then
  "$BUF" breaking proto --against ".git#ref=HEAD~1,subdir=proto"
  echo "buf: lint passed; no breaking change against HEAD~1" >&2
else
  echo "buf: lint passed; HEAD~1 has no proto/buf.yaml, so no breaking check" >&2
fi
