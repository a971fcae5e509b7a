#!/usr/bin/env bash
# The project's test command: installs what the tests need (Valkey binaries, client libraries and
# the tools that judge the addon, all into .deps), then runs the same checks CI runs: formatting,
# clippy with warnings as errors, and every test of the workspace (unit, property and the scenario
# tests against real Valkey servers and sentinels).
# Idempotent; safe to run again at any time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

command -v cargo >/dev/null || { echo "tests/run.sh: cargo not found (a Rust toolchain is assumed)" >&2; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "tests/run.sh: installing cargo-nextest" >&2
  cargo install cargo-nextest --locked
fi

bash tests/install-valkey.sh >/dev/null
# Helm 3 and 4, kube-apiserver and etcd (built from their Go modules once, then cached by
# version), shellcheck, bats, rclone, promtool and the prometheus-operator CRDs, for the addon.
bash tests/install-addon-tools.sh >/dev/null
bash tests/install-clients.sh >/dev/null
bash tests/install-netfilter.sh >/dev/null

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# The labs keep their files (sentinel configs, RDB and AOF files) on tmpfs where there is one:
# a sentinel fsyncs its config on every change, and on a busy disk one fsync can stall it for
# seconds, long enough to enter TILT and turn a scenario's timing into the disk's.
if [ -z "${VALKEY_LAB_TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  VALKEY_LAB_TMPDIR=/dev/shm/valkey-lab-tests
fi
if [ -n "${VALKEY_LAB_TMPDIR:-}" ]; then
  mkdir -p "$VALKEY_LAB_TMPDIR"
  export TMPDIR="$VALKEY_LAB_TMPDIR"
fi
cargo nextest run --workspace --all-features --locked --no-fail-fast "$@"
