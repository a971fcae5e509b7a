#!/usr/bin/env bash
# The project's main job: installs Valkey if needed, then runs `valkey-coordinator demo`: a 3 data
# + 3 sentinel group on loopback with the coordinator on top, printing the live verdict, the
# coordinator's event tap and the data pods' roles until Ctrl-C, which stops every process.
# Extra arguments go to the demo: --valkey-version 8.0.1|8.1.8|9.1.2, --failover, --verbose,
# --for SECONDS, --listen ADDR (default 127.0.0.1:26379, or the next free port).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command -v cargo >/dev/null || { echo "tests/demo.sh: cargo not found (a Rust toolchain is assumed)" >&2; exit 1; }
bash tests/install-valkey.sh >/dev/null
echo "tests/demo.sh: building valkey-coordinator in release (the first build takes a few minutes)" >&2
cargo build --release --locked -p valkey-coordinator --features demo
exec "${CARGO_TARGET_DIR:-$root/target}/release/valkey-coordinator" demo "$@"
