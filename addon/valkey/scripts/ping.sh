#!/bin/sh
# Probe of a data or sentinel container:
#   ping.sh data|sentinel ready|alive
# ready: the local server answers PONG (not LOADING, not an error).
# alive: the local server answers at all; LOADING (a large dataset being loaded) or BUSY (a
#        long script) is alive, and a liveness probe must not restart it for that.
set -eu
# shellcheck source=SCRIPTDIR/common.sh
. "${0%/*}/common.sh"

case ${1:-} in
  data)
    need VALKEY_PORT
    port=$VALKEY_PORT
    use_password "${VALKEY_COORDINATOR_DATA_PASSWORD:-}"
    ;;
  sentinel)
    need SENTINEL_PORT
    port=$SENTINEL_PORT
    use_password "${VALKEY_COORDINATOR_SENTINEL_PASSWORD:-}"
    ;;
  *) die "usage: ping.sh data|sentinel ready|alive" ;;
esac

reply=$(local_cli "$port" -t 2 PING) || die "no answer on port $port"
case ${2:-} in
  ready) [ "$reply" = PONG ] || die "not ready: $reply" ;;
  alive) ;;
  *) die "usage: ping.sh data|sentinel ready|alive" ;;
esac
