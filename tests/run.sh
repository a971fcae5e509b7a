#!/usr/bin/env bash
# The project's test command: installs what the tests need (Valkey binaries into .deps), then runs
# the same checks CI runs: formatting, clippy with warnings as errors, and every test of the
# workspace (unit, property and the scenario tests against real Valkey servers and sentinels).
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
bash tests/install-clients.sh >/dev/null

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
cargo nextest run --workspace --all-features --locked --no-fail-fast "$@"
