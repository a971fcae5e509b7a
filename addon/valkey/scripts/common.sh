# shellcheck shell=sh
# Sourced by the valkey addon's start and lifecycle scripts; not run by itself.
#
# Every path comes from the environment the chart sets to the mount paths (DATA_DIR, CONF_DIR,
# RUNTIME_DIR, TOOLS_DIR, TLS_DIR): a test stand-in remaps each mount by rewriting those values,
# so no script names a mount path itself. valkey-server and valkey-cli come from PATH. Passwords
# only ever travel in the environment (REDISCLI_AUTH for valkey-cli) or in files of mode 0600,
# never on a command line; nothing here turns on shell tracing.

# die MESSAGE: one line on stderr naming the script, then exit 1.
die() {
  printf '%s: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

# need NAME...: each named variable is set and not empty.
need() {
  for _need_name in "$@"; do
    eval "_need_value=\${$_need_name:-}"
    # shellcheck disable=SC2154 # assigned by the eval above
    [ -n "$_need_value" ] || die "$_need_name is not set"
  done
}

# pod_name: this pod's name: kbagent's KB_AGENT_POD_NAME in a lifecycle action, the
# downward-API CURRENT_POD_NAME in a container.
pod_name() {
  printf '%s' "${KB_AGENT_POD_NAME:-${CURRENT_POD_NAME:-}}"
}

# pod_entry NAME LIST: the entry of the comma-separated LIST that is pod NAME: the entry that
# starts with "NAME." (a pod FQDN); else the entry at NAME's ordinal (a list of bare addresses,
# as a stand-in's DNS may give, in ordinal order like KubeBlocks' lists); else NAME itself.
pod_entry() {
  _pe_pod=$1
  _pe_ordinal=${_pe_pod##*-}
  _pe_by_name=
  _pe_by_ordinal=
  _pe_index=0
  _pe_ifs=$IFS
  IFS=,
  set -f
  for _pe_entry in $2; do
    case $_pe_entry in
      "$_pe_pod".*) [ -n "$_pe_by_name" ] || _pe_by_name=$_pe_entry ;;
    esac
    if [ "$_pe_index" = "$_pe_ordinal" ]; then
      _pe_by_ordinal=$_pe_entry
    fi
    _pe_index=$((_pe_index + 1))
  done
  set +f
  IFS=$_pe_ifs
  if [ -n "$_pe_by_name" ]; then
    printf '%s' "$_pe_by_name"
  elif [ -n "$_pe_by_ordinal" ]; then
    printf '%s' "$_pe_by_ordinal"
  else
    printf '%s' "$_pe_pod"
  fi
}

# host_of ENTRY: ENTRY without a trailing :PORT (an entry is HOST or HOST:PORT).
host_of() {
  case $1 in
    *:*:*) printf '%s' "$1" ;; # an IPv6 address: no port
    *:*) printf '%s' "${1%:*}" ;;
    *) printf '%s' "$1" ;;
  esac
}

# budget_from_args "$@": a leading `--timeout-ms MS` (the chart puts each action's budget on its
# command line, next to its timeoutSeconds) becomes VALKEY_COORDINATOR_TIMEOUT_MS. Any further
# arguments are ignored (KubeBlocks appends `NAME VALUE` to reconfigure calls).
budget_from_args() {
  if [ "${1:-}" = --timeout-ms ]; then
    case ${2:-} in
      '' | *[!0-9]*) die "--timeout-ms needs a number of milliseconds" ;;
    esac
    VALKEY_COORDINATOR_TIMEOUT_MS=$2
    export VALKEY_COORDINATOR_TIMEOUT_MS
  fi
}

# replica_priority: the replica-priority the rendered template ($CONF_DIR/valkey.conf) sets,
# 100 (the engine's default) when it sets none.
replica_priority() {
  _rp=100
  if [ -r "$CONF_DIR/valkey.conf" ]; then
    while read -r _rp_key _rp_value _rp_rest || [ -n "${_rp_key:-}" ]; do
      case $_rp_key in
        replica-priority | slave-priority)
          _rp_value=${_rp_value#\"}
          _rp=${_rp_value%\"}
          ;;
      esac
    done <"$CONF_DIR/valkey.conf"
  fi
  case $_rp in
    '' | *[!0-9]*) die "replica-priority in $CONF_DIR/valkey.conf is not a number: $_rp" ;;
  esac
  printf '%s' "$_rp"
}

# conf_string VALUE: VALUE as a double-quoted valkey.conf string, backslashes and quotes escaped.
# The value goes through printf (a shell builtin) and a pipe, never onto a command line.
conf_string() {
  case $1 in
    *'
'*) die "a value holds a newline, which a valkey.conf line cannot carry" ;;
  esac
  printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"
}

# local_cli PORT ARG...: valkey-cli against this pod's own server at LOCAL_HOST (its pod IP: the
# server binds nothing else), over TLS verified with the mounted CA when TLS is enabled. The
# caller puts the password in REDISCLI_AUTH.
local_cli() {
  _lc_port=$1
  shift
  need LOCAL_HOST
  if [ "${TLS_ENABLED:-false}" = true ]; then
    need TLS_DIR
    valkey-cli -h "$LOCAL_HOST" -p "$_lc_port" --tls --cacert "$TLS_DIR/ca.crt" "$@"
  else
    valkey-cli -h "$LOCAL_HOST" -p "$_lc_port" "$@"
  fi
}

# acl_user NAME PASSWORD RULES: the ACL line of a user with exactly RULES (from nothing:
# `reset`) and PASSWORD, stored as its SHA-256 so the file never holds the password itself.
acl_user() {
  case $3 in
    *'
'*) die "the rules of $1 hold a newline" ;;
  esac
  _au_hash=$(printf '%s' "$2" | sha256sum)
  printf 'user %s reset on #%s %s\n' "$1" "${_au_hash%% *}" "$3"
}

# use_password VALUE: REDISCLI_AUTH for the valkey-cli calls that follow (unset when empty).
use_password() {
  if [ -n "$1" ]; then
    REDISCLI_AUTH=$1
    export REDISCLI_AUTH
  else
    unset REDISCLI_AUTH
  fi
}

# coordinator_tls: with TLS enabled, the binary's TLS settings from the pod's mount: every link
# it opens (sentinels, data pods, coordinators) is TLS, verified with the mounted CA, and the
# pod's certificate is its client certificate.
coordinator_tls() {
  if [ "${TLS_ENABLED:-false}" = true ]; then
    need TLS_DIR
    VALKEY_COORDINATOR_TLS=true
    VALKEY_COORDINATOR_TLS_CA_CERT_FILE=$TLS_DIR/ca.crt
    VALKEY_COORDINATOR_TLS_CERT_FILE=$TLS_DIR/tls.crt
    VALKEY_COORDINATOR_TLS_KEY_FILE=$TLS_DIR/tls.key
    export VALKEY_COORDINATOR_TLS VALKEY_COORDINATOR_TLS_CA_CERT_FILE \
      VALKEY_COORDINATOR_TLS_CERT_FILE VALKEY_COORDINATOR_TLS_KEY_FILE
  fi
}

# coordinator SUBCOMMAND ARG...: the valkey-coordinator binary the init container installed.
coordinator() {
  need TOOLS_DIR
  [ -x "$TOOLS_DIR/valkey-coordinator" ] || die "$TOOLS_DIR/valkey-coordinator is missing"
  coordinator_tls
  "$TOOLS_DIR/valkey-coordinator" "$@"
}

# exec_coordinator SUBCOMMAND ARG...: the same, replacing this shell.
exec_coordinator() {
  need TOOLS_DIR
  [ -x "$TOOLS_DIR/valkey-coordinator" ] || die "$TOOLS_DIR/valkey-coordinator is missing"
  coordinator_tls
  exec "$TOOLS_DIR/valkey-coordinator" "$@"
}
