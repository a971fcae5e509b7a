#!/bin/sh
# Entrypoint of a sentinel pod: writes $RUNTIME_DIR/sentinel.conf (an emptyDir, mode 0600)
# fresh at every start, with no monitor: the coordinator registers the agreed master (and
# re-registers it after every restart, which is what a sentinel on emptyDir needs). Then exec
# valkey-server --sentinel.
set -eu
# shellcheck source=SCRIPTDIR/common.sh
. "${0%/*}/common.sh"

need RUNTIME_DIR SENTINEL_PORT BIND_ADDRESSES VALKEY_COORDINATOR_SENTINEL
pod=$(pod_name)
[ -n "$pod" ] || die "CURRENT_POD_NAME is not set"
announce=$(host_of "$(pod_entry "$pod" "$VALKEY_COORDINATOR_SENTINEL")")
password=${VALKEY_COORDINATOR_SENTINEL_PASSWORD:-}
umask 077

conf=$RUNTIME_DIR/sentinel.conf
{
  printf 'bind %s\n' "$BIND_ADDRESSES"
  if [ "${TLS_ENABLED:-false}" = true ]; then
    need TLS_DIR
    printf 'port 0\ntls-port %s\n' "$SENTINEL_PORT"
    printf 'tls-cert-file %s\n' "$TLS_DIR/tls.crt"
    printf 'tls-key-file %s\n' "$TLS_DIR/tls.key"
    printf 'tls-ca-cert-file %s\n' "$TLS_DIR/ca.crt"
    # Outgoing links (to data pods and to the other sentinels) over TLS too.
    printf 'tls-replication yes\ntls-auth-clients no\n'
  else
    printf 'port %s\n' "$SENTINEL_PORT"
  fi
  printf 'dir %s\n' "$RUNTIME_DIR"
  printf 'sentinel resolve-hostnames yes\n'
  printf 'sentinel announce-hostnames yes\n'
  printf 'sentinel announce-ip %s\n' "$announce"
  if [ -n "$password" ]; then
    # Clients and the other sentinels (which share this password) authenticate with it.
    printf 'requirepass %s\n' "$(conf_string "$password")"
    printf 'sentinel sentinel-pass %s\n' "$(conf_string "$password")"
  fi
  if [ -n "${COORDINATOR_USER_PASSWORD:-}" ]; then
    # The coordinator and the lifecycle actions log in as this least-privilege user.
    need COORDINATOR_USER_RULES
    acl_user coordinator "$COORDINATOR_USER_PASSWORD" "$COORDINATOR_USER_RULES"
  fi
} >"$conf.tmp"
mv -f "$conf.tmp" "$conf"

exec valkey-server "$conf" --sentinel
