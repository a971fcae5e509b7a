#!/usr/bin/env bash
# The project's main job: installs Valkey if needed, then runs a 3 data + 3 sentinel group on
# loopback and prints its live state and sentinel events until Ctrl-C, which stops every process.
# Extra arguments go to the lab: --version 8.0.1|8.1.8|9.1.2, --failover, --for SECONDS.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash tests/install-valkey.sh >/dev/null
exec cargo run --quiet --release --locked -p valkey-lab --bin valkey-lab -- "$@"
