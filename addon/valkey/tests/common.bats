#!/usr/bin/env bats
# The logic in the scripts' shared helpers (addon/valkey/scripts/common.sh): which entry of a
# KubeBlocks pod list is this pod, how a value becomes a valkey.conf string, where the budget
# and the replica priority come from, and the binary's TLS settings.

setup() {
  # shellcheck source=../scripts/common.sh
  . "$BATS_TEST_DIRNAME/../scripts/common.sh"
}

@test "a pod's own FQDN is found by its name, wherever it is in the list" {
  list="kb-valkey-1.kb-valkey-headless.demo.svc.cluster.local,kb-valkey-0.kb-valkey-headless.demo.svc.cluster.local"
  run pod_entry kb-valkey-0 "$list"
  [ "$status" -eq 0 ]
  [ "$output" = "kb-valkey-0.kb-valkey-headless.demo.svc.cluster.local" ]
}

@test "pod-1 never matches pod-10's FQDN" {
  list="kb-valkey-10.h.demo.svc,kb-valkey-1.h.demo.svc"
  run pod_entry kb-valkey-1 "$list"
  [ "$output" = "kb-valkey-1.h.demo.svc" ]
}

@test "a list of bare addresses is read by ordinal" {
  run pod_entry kb-valkey-2 "127.0.0.10,127.0.0.11,127.0.0.12"
  [ "$output" = "127.0.0.12" ]
}

@test "a pod missing from the list stands for itself" {
  run pod_entry kb-valkey-7 "10.0.0.1,10.0.0.2"
  [ "$output" = "kb-valkey-7" ]
}

@test "a glob in the list is never expanded" {
  cd "$BATS_TEST_TMPDIR"
  touch kb-valkey-0.decoy
  run pod_entry kb-valkey-0 "*"
  [ "$output" = "*" ]
}

@test "host_of drops a port but keeps an IPv6 address whole" {
  [ "$(host_of pod.svc:6379)" = "pod.svc" ]
  [ "$(host_of 10.0.0.1)" = "10.0.0.1" ]
  [ "$(host_of fd00::1)" = "fd00::1" ]
}

@test "a password becomes a quoted config string with quotes and backslashes escaped" {
  run conf_string 'pa ss"w\rd$*'
  [ "$status" -eq 0 ]
  [ "$output" = '"pa ss\"w\\rd$*"' ]
}

@test "a value with a newline is refused, naming why" {
  run conf_string "$(printf 'a\nb')"
  [ "$status" -eq 1 ]
  [[ "$output" == *"newline"* ]]
}

@test "the budget on the command line becomes the binary's budget, and must be a number" {
  budget_from_args --timeout-ms 2500 NAME VALUE
  [ "$VALKEY_COORDINATOR_TIMEOUT_MS" = 2500 ]
  run budget_from_args --timeout-ms soon
  [ "$status" -eq 1 ]
}

@test "the replica priority is the template's, 100 when it sets none" {
  CONF_DIR=$BATS_TEST_TMPDIR
  printf 'maxmemory-policy noeviction\n' >"$CONF_DIR/valkey.conf"
  [ "$(replica_priority)" = 100 ]
  printf 'replica-priority "25"\n' >>"$CONF_DIR/valkey.conf"
  [ "$(replica_priority)" = 25 ]
  printf 'replica-priority soon\n' >"$CONF_DIR/valkey.conf"
  run replica_priority
  [ "$status" -eq 1 ]
}

@test "need names the first missing variable" {
  A=1
  unset B
  run need A B
  [ "$status" -eq 1 ]
  [[ "$output" == *"B is not set"* ]]
}

@test "with TLS enabled the binary gets the mount's CA, certificate and key; without, nothing" {
  TLS_ENABLED=true TLS_DIR=/etc/pki/tls coordinator_tls
  [ "$VALKEY_COORDINATOR_TLS" = true ]
  [ "$VALKEY_COORDINATOR_TLS_CA_CERT_FILE" = /etc/pki/tls/ca.crt ]
  [ "$VALKEY_COORDINATOR_TLS_CERT_FILE" = /etc/pki/tls/tls.crt ]
  [ "$VALKEY_COORDINATOR_TLS_KEY_FILE" = /etc/pki/tls/tls.key ]
  unset VALKEY_COORDINATOR_TLS VALKEY_COORDINATOR_TLS_CA_CERT_FILE
  TLS_ENABLED=false coordinator_tls
  [ -z "${VALKEY_COORDINATOR_TLS:-}" ]
  [ -z "${VALKEY_COORDINATOR_TLS_CA_CERT_FILE:-}" ]
  run env TLS_ENABLED=true sh -c '. "$0"; unset TLS_DIR; coordinator_tls' "$BATS_TEST_DIRNAME/../scripts/common.sh"
  [ "$status" -eq 1 ]
  [[ "$output" == *"TLS_DIR is not set"* ]]
}

@test "an ACL user line holds the rules from nothing and the password's SHA-256, never the password" {
  run acl_user sentinel 's3cret' '+ping &__sentinel__:hello'
  [ "$status" -eq 0 ]
  [ "$output" = "user sentinel reset on #$(printf s3cret | sha256sum | cut -d' ' -f1) +ping &__sentinel__:hello" ]
  [[ "$output" != *s3cret* ]]
}
