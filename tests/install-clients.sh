#!/usr/bin/env bash
# Installs the unmodified sentinel-aware client libraries the end-to-end tests drive, into
# git-ignored folders under .deps/: a Python venv (.deps/py) with redis-py and valkey-py, and a
# Node prefix (.deps/node) with ioredis and iovalkey. Versions are pinned so a test run is
# reproducible; bump them here deliberately. Idempotent: a folder whose stamp matches the pinned
# versions is left alone.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="$root/.deps"
mkdir -p "$deps"

python_packages=("redis==8.1.0" "valkey==6.2.0")
node_packages=("ioredis@6.0.0" "iovalkey@0.4.0")

py="$deps/py"
py_stamp="${python_packages[*]}"
if [[ "$(cat "$py/.stamp" 2>/dev/null)" != "$py_stamp" ]]; then
  command -v python3 >/dev/null || { echo "install-clients.sh: python3 not found" >&2; exit 1; }
  rm -rf "$py"
  python3 -m venv "$py"
  "$py/bin/pip" install --quiet --disable-pip-version-check "${python_packages[@]}"
  echo "$py_stamp" >"$py/.stamp"
fi

node="$deps/node"
node_stamp="${node_packages[*]}"
if [[ "$(cat "$node/.stamp" 2>/dev/null)" != "$node_stamp" ]]; then
  command -v npm >/dev/null || { echo "install-clients.sh: npm not found" >&2; exit 1; }
  rm -rf "$node"
  mkdir -p "$node"
  npm install --silent --no-audit --no-fund --prefix "$node" "${node_packages[@]}"
  echo "$node_stamp" >"$node/.stamp"
fi
