#!/bin/sh
# Entrypoint of a data pod's valkey container:
#   valkey-start.sh [--timeout-ms MS]     (the budget of `startup`; its own default when absent)
# 1. $DATA_DIR/users.acl: every ACL user kept as it is, `default` written fresh from the data
#    password (with an aclfile the server ignores requirepass, so this line is the password),
#    and `sentinel`, the sentinels' least-privilege user, from its password and rules.
# 2. $RUNTIME_DIR/valkey.conf (mode 0600): the rendered template, then what this pod owns
#    (addresses, port or TLS, data paths, announce address, masterauth), then the decision of
#    step 3.
# 3. `valkey-coordinator startup` decides master or replica of whom and writes
#    $DATA_DIR/startup.conf (on the data volume: startup reads this pod's persisted offset from
#    dump.rdb next to it); a failure exits non-zero and the container restarts.
# 4. exec valkey-server.
set -eu
# shellcheck source=SCRIPTDIR/common.sh
. "${0%/*}/common.sh"

budget_from_args "$@"
need DATA_DIR CONF_DIR RUNTIME_DIR TOOLS_DIR VALKEY_PORT BIND_ADDRESSES VALKEY_COORDINATOR_DATA_POD
pod=$(pod_name)
[ -n "$pod" ] || die "CURRENT_POD_NAME is not set"
VALKEY_COORDINATOR_POD=$(pod_entry "$pod" "$VALKEY_COORDINATOR_DATA_POD")
export VALKEY_COORDINATOR_POD
announce=$(host_of "$VALKEY_COORDINATOR_POD")
password=${VALKEY_COORDINATOR_DATA_PASSWORD:-}
umask 077

# 1. The ACL file.
acl=$DATA_DIR/users.acl
{
  if [ -f "$acl" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
      case $line in
        'user default '* | 'user sentinel '*) ;;
        *) printf '%s\n' "$line" ;;
      esac
    done <"$acl"
  fi
  if [ -n "$password" ]; then
    hash=$(printf '%s' "$password" | sha256sum)
    printf 'user default on #%s ~* &* +@all\n' "${hash%% *}"
  else
    printf 'user default on nopass ~* &* +@all\n'
  fi
  if [ -n "${SENTINEL_USER_PASSWORD:-}" ]; then
    need SENTINEL_USER_RULES
    acl_user sentinel "$SENTINEL_USER_PASSWORD" "$SENTINEL_USER_RULES"
  fi
} >"$acl.tmp"
mv -f "$acl.tmp" "$acl"

# 2. The runtime config. Later lines win over the template's.
conf=$RUNTIME_DIR/valkey.conf
{
  printf 'include %s\n' "$CONF_DIR/valkey.conf"
  printf 'bind %s\n' "$BIND_ADDRESSES"
  if [ "${TLS_ENABLED:-false}" = true ]; then
    need TLS_DIR
    # TLS only, on the same port: clients, replicas and sentinels all speak TLS.
    printf 'port 0\ntls-port %s\n' "$VALKEY_PORT"
    printf 'tls-cert-file %s\n' "$TLS_DIR/tls.crt"
    printf 'tls-key-file %s\n' "$TLS_DIR/tls.key"
    printf 'tls-ca-cert-file %s\n' "$TLS_DIR/ca.crt"
    printf 'tls-replication yes\ntls-auth-clients no\n'
  else
    printf 'port %s\n' "$VALKEY_PORT"
  fi
  printf 'dir %s\n' "$DATA_DIR"
  printf 'aclfile %s\n' "$acl"
  printf 'replica-announce-ip %s\n' "$announce"
  if [ -n "$password" ]; then
    printf 'masterauth %s\n' "$(conf_string "$password")"
  fi
  printf 'include %s\n' "$DATA_DIR/startup.conf"
} >"$conf.tmp"
mv -f "$conf.tmp" "$conf"

# 3. Master, or replica of whom.
priority=$(replica_priority)
decision=$(coordinator startup --write-config "$DATA_DIR/startup.conf" --replica-priority "$priority") ||
  die "startup could not decide how $VALKEY_COORDINATOR_POD starts; not starting valkey-server"
printf '%s: %s starts as %s\n' "${0##*/}" "$VALKEY_COORDINATOR_POD" "$decision" >&2

# 4. The server.
exec valkey-server "$conf"
