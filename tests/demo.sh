#!/usr/bin/env bash
# The project's main job: installs Valkey if needed, then runs `valkey-coordinator demo`: a 3 data
# + 3 sentinel group on loopback with the coordinator on top, printing the live verdict, the
# coordinator's event tap and the data pods' roles until Ctrl-C, which stops every process.
# Extra arguments go to the demo: --valkey-version 8.0.1|8.1.8|9.1.2, --failover, --for SECONDS,
# --listen ADDR (default 127.0.0.1:26379).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command -v cargo >/dev/null || { echo "tests/demo.sh: cargo not found (a Rust toolchain is assumed)" >&2; exit 1; }
bash tests/install-valkey.sh >/dev/null
exec cargo run --quiet --release --locked -p valkey-coordinator --features demo -- demo "$@"
