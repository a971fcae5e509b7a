#!/bin/sh
# preStop hook of a data pod: BGSAVE and wait for it, so that dump.rdb (whose replication offset
# `startup` compares when every sentinel lost its state, e.g. after a full stop) is current.
#   pre-stop.sh [--timeout-ms MS]       (how long to wait; 20000 when absent)
# Stops early, non-zero, when the server stops answering; the server saves again on SIGTERM.
set -eu
# shellcheck source=SCRIPTDIR/common.sh
. "${0%/*}/common.sh"

budget_from_args "$@"
need VALKEY_PORT
use_password "${VALKEY_COORDINATOR_DATA_PASSWORD:-}"
seconds=$(((${VALKEY_COORDINATOR_TIMEOUT_MS:-20000} + 999) / 1000))
deadline=$(($(date +%s) + seconds))

# field NAME INFO: the value of NAME: in INFO output (carriage returns dropped).
field() {
  printf '%s\n' "$2" | tr -d '\r' | sed -n "s/^$1://p"
}

info=$(local_cli "$VALKEY_PORT" -t 2 INFO persistence) || die "the server does not answer; nothing to save"
before=$(field rdb_saves "$info")
while :; do
  reply=$(local_cli "$VALKEY_PORT" -t 2 BGSAVE SCHEDULE) || die "the server stopped answering"
  case $reply in
    'Background saving started' | 'Background saving scheduled') break ;;
    *'already in progress'*) ;; # wait for the running one, then ask for ours
    *) die "BGSAVE refused: $reply" ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || die "no BGSAVE could start within ${seconds}s"
  sleep 1
done
while :; do
  info=$(local_cli "$VALKEY_PORT" -t 2 INFO persistence) || die "the server stopped answering during BGSAVE"
  if [ "$(field rdb_bgsave_in_progress "$info")" = 0 ] && [ "$(field rdb_saves "$info")" -gt "$before" ]; then
    [ "$(field rdb_last_bgsave_status "$info")" = ok ] || die "BGSAVE failed (rdb_last_bgsave_status)"
    printf '%s: BGSAVE done\n' "${0##*/}"
    exit 0
  fi
  [ "$(date +%s)" -lt "$deadline" ] || die "BGSAVE still running after ${seconds}s"
  sleep 1
done
