#!/bin/sh
# Backup of the valkey-physical ActionSet: a BGSAVE snapshot and the ACL file, nothing else.
# Self-contained (the ActionSet runs it inline, where common.sh is not mounted).
#   backup.sh snapshot SECONDS   preBackup, exec'd in the target pod's valkey container: BGSAVE
#                                and wait (at most SECONDS) until it is saved.
#   backup.sh push               backupData, a job on the target pod's node with its data volume
#                                at DATA_DIR: `datasafed push` dump.rdb and users.acl, and the
#                                size into DP_BACKUP_INFO_FILE.
# The snapshot step talks to the local server with the pod's own environment (password in
# REDISCLI_AUTH, TLS verified with the pod's CA); the push step needs no database connection.
set -eu

die() {
  printf 'backup.sh: %s\n' "$*" >&2
  [ -z "${DP_BACKUP_INFO_FILE:-}" ] || touch "${DP_BACKUP_INFO_FILE}.exit"
  exit 1
}

snapshot() {
  seconds=$1
  : "${VALKEY_PORT:?}" "${LOCAL_HOST:?}"
  if [ -n "${VALKEY_COORDINATOR_DATA_PASSWORD:-}" ]; then
    REDISCLI_AUTH=$VALKEY_COORDINATOR_DATA_PASSWORD
    export REDISCLI_AUTH
  fi
  cli() {
    if [ "${TLS_ENABLED:-false}" = true ]; then
      valkey-cli -h "$LOCAL_HOST" -p "$VALKEY_PORT" -t 5 --tls --cacert "${TLS_DIR:?}/ca.crt" "$@"
    else
      valkey-cli -h "$LOCAL_HOST" -p "$VALKEY_PORT" -t 5 "$@"
    fi
  }
  field() {
    printf '%s\n' "$2" | tr -d '\r' | sed -n "s/^$1://p"
  }
  deadline=$(($(date +%s) + seconds))
  info=$(cli INFO persistence) || die "the server does not answer"
  before=$(field rdb_saves "$info")
  while :; do
    reply=$(cli BGSAVE SCHEDULE) || die "the server stopped answering"
    case $reply in
      'Background saving started' | 'Background saving scheduled') break ;;
      *'already in progress'*) ;; # an older snapshot: wait for it, then take ours
      *) die "BGSAVE refused: $reply" ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || die "no BGSAVE could start within ${seconds}s"
    sleep 2
  done
  while :; do
    info=$(cli INFO persistence) || die "the server stopped answering during BGSAVE"
    if [ "$(field rdb_bgsave_in_progress "$info")" = 0 ] && [ "$(field rdb_saves "$info")" -gt "$before" ]; then
      [ "$(field rdb_last_bgsave_status "$info")" = ok ] || die "BGSAVE failed"
      printf 'backup.sh: snapshot saved\n'
      return 0
    fi
    [ "$(date +%s)" -lt "$deadline" ] || die "BGSAVE still running after ${seconds}s"
    sleep 2
  done
}

push() {
  : "${DATA_DIR:?}" "${DP_BACKUP_BASE_PATH:?}" "${DP_BACKUP_INFO_FILE:?}"
  if [ -n "${DP_DATASAFED_BIN_PATH:-}" ]; then
    PATH=$PATH:$DP_DATASAFED_BIN_PATH
  fi
  DATASAFED_BACKEND_BASE_PATH=$DP_BACKUP_BASE_PATH
  export PATH DATASAFED_BACKEND_BASE_PATH
  [ -s "$DATA_DIR/dump.rdb" ] || die "$DATA_DIR/dump.rdb is missing or empty"
  [ -f "$DATA_DIR/users.acl" ] || die "$DATA_DIR/users.acl is missing"
  size=0
  for file in dump.rdb users.acl; do
    datasafed push "$DATA_DIR/$file" "$file" || die "datasafed push $file failed"
    size=$((size + $(wc -c <"$DATA_DIR/$file")))
  done
  printf '{"totalSize":"%s"}\n' "$size" >"$DP_BACKUP_INFO_FILE" || die "cannot write $DP_BACKUP_INFO_FILE"
  sync
  printf 'backup.sh: pushed dump.rdb and users.acl (%s bytes)\n' "$size"
}

case ${1:-} in
  snapshot) snapshot "${2:-1200}" ;;
  push) push ;;
  *) die "usage: backup.sh snapshot SECONDS | push" ;;
esac
