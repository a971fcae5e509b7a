#!/usr/bin/env bash
# Runs the side-by-side benchmarks of the coordinator against a real sentinel: installs the Valkey
# builds (valkey-benchmark comes with 8.0.1) and the Python clients if missing, builds the
# coordinator and the bench in release, and runs every phase. Extra arguments go to the bench
# binary (see `--help`), e.g. `bash bench/run.sh --failovers 5`.
# Results: bench/results/results.md (the table, also printed) and bench/results/results.json.
# Everything runs on loopback; every process it starts dies with it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash tests/install-valkey.sh >/dev/null
bash tests/install-clients.sh
cargo build --release --locked -p valkey-coordinator -p coordinator-bench
exec "$root/target/release/coordinator-bench" --out "$root/bench/results" "$@"
