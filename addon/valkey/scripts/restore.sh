#!/bin/sh
# Restore of the valkey-physical ActionSet. Self-contained (run inline by the ActionSet).
#   restore.sh prepare-data       prepareData, a job with the new data volume at DATA_DIR: refuses
#                                 a data directory holding anything but lost+found, pulls
#                                 dump.rdb and users.acl into a staging directory, seeds a
#                                 multi-part AOF whose base is the snapshot (with appendonly yes
#                                 the server loads the AOF and would ignore dump.rdb) and moves
#                                 them in; dump.rdb stays: startup compares its offset. The
#                                 staging directory goes last, so while it exists what the data
#                                 directory holds of those names is an interrupted attempt's, which
#                                 the Job's retry (KubeBlocks' backoffLimit) replaces.
#   restore.sh post-ready SECONDS postReady, exec'd in each restored data pod: succeeds once the
#                                 sentinels agree on a master (the coordinator registers the
#                                 restored master on the fresh sentinels); at most SECONDS.
set -eu

die() {
  printf 'restore.sh: %s\n' "$*" >&2
  exit 1
}

prepare_data() {
  : "${DATA_DIR:?}" "${DP_BACKUP_BASE_PATH:?}"
  if [ -n "${DP_DATASAFED_BIN_PATH:-}" ]; then
    PATH=$PATH:$DP_DATASAFED_BIN_PATH
  fi
  DATASAFED_BACKEND_BASE_PATH=$DP_BACKUP_BASE_PATH
  export PATH DATASAFED_BACKEND_BASE_PATH
  staging=$DATA_DIR/.valkey-restore
  interrupted=false
  [ -d "$staging" ] && interrupted=true
  for entry in "$DATA_DIR"/* "$DATA_DIR"/.[!.]* "$DATA_DIR"/..?*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    case ${entry##*/} in
      lost+found | .valkey-restore) ;;
      dump.rdb | users.acl | appendonlydir) [ "$interrupted" = true ] ||
        die "the data directory is not empty (${entry##*/}): refusing to restore over it" ;;
      *) die "the data directory is not empty (${entry##*/}): refusing to restore over it" ;;
    esac
  done
  rm -rf "$staging"
  mkdir "$staging"
  datasafed pull dump.rdb "$staging/dump.rdb" || die "datasafed pull dump.rdb failed"
  [ -s "$staging/dump.rdb" ] || die "the backup's dump.rdb is empty"
  if datasafed list users.acl | grep -q 'users\.acl'; then
    datasafed pull users.acl "$staging/users.acl" || die "datasafed pull users.acl failed"
  fi
  aof=$staging/appendonlydir
  mkdir "$aof"
  ln "$staging/dump.rdb" "$aof/appendonly.aof.1.base.rdb" 2>/dev/null ||
    cp "$staging/dump.rdb" "$aof/appendonly.aof.1.base.rdb"
  : >"$aof/appendonly.aof.1.incr.aof"
  printf 'file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n' \
    >"$aof/appendonly.aof.manifest"
  sync
  # An interrupted attempt's files, if any, then ours; the staging directory last.
  for entry in "$staging"/*; do
    rm -rf "${DATA_DIR:?}/${entry##*/}"
    mv "$entry" "$DATA_DIR/"
  done
  sync
  rmdir "$staging"
  sync
  printf 'restore.sh: restored dump.rdb%s into %s\n' \
    "$([ -f "$DATA_DIR/users.acl" ] && printf ' and users.acl')" "$DATA_DIR"
}

post_ready() {
  seconds=$1
  : "${TOOLS_DIR:?}"
  deadline=$(($(date +%s) + seconds))
  while :; do
    if out=$(
      export VALKEY_COORDINATOR_TIMEOUT_MS=5000
      # This script is self-contained (no common.sh): the pod's TLS settings, as there.
      if [ "${TLS_ENABLED:-false}" = true ]; then
        : "${TLS_DIR:?}"
        VALKEY_COORDINATOR_TLS=true
        VALKEY_COORDINATOR_TLS_CA_CERT_FILE=$TLS_DIR/ca.crt
        VALKEY_COORDINATOR_TLS_CERT_FILE=$TLS_DIR/tls.crt
        VALKEY_COORDINATOR_TLS_KEY_FILE=$TLS_DIR/tls.key
        export VALKEY_COORDINATOR_TLS VALKEY_COORDINATOR_TLS_CA_CERT_FILE \
          VALKEY_COORDINATOR_TLS_CERT_FILE VALKEY_COORDINATOR_TLS_KEY_FILE
      fi
      "$TOOLS_DIR/valkey-coordinator" status 2>&1
    ); then
      printf '%s\n' "$out"
      return 0
    fi
    [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 5
  done
  printf '%s\n' "$out" >&2
  die "the sentinels agree on no master ${seconds}s after the restore"
}

case ${1:-} in
  prepare-data) prepare_data ;;
  post-ready) post_ready "${2:-600}" ;;
  *) die "usage: restore.sh prepare-data | post-ready SECONDS" ;;
esac
