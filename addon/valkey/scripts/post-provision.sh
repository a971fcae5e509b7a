#!/bin/sh
# postProvision of the data component: succeeds once a master is agreed, i.e. the data pods
# bootstrapped and the coordinator registered the master on a majority of the sentinels.
# `valkey-coordinator status` looks once; this asks again every 2 s within the budget.
#   post-provision.sh --timeout-ms MS
set -eu
# shellcheck source=SCRIPTDIR/common.sh
. "${0%/*}/common.sh"

budget_from_args "$@"
budget_ms=${VALKEY_COORDINATOR_TIMEOUT_MS:-50000}
deadline=$(($(date +%s) + budget_ms / 1000))
while :; do
  left=$((deadline - $(date +%s)))
  [ "$left" -gt 0 ] || break
  # One look at most 5 s, and never past the deadline.
  look=5000
  if [ "$left" -lt 5 ]; then
    look=$((left * 1000))
  fi
  if out=$(
    export VALKEY_COORDINATOR_TIMEOUT_MS="$look"
    coordinator status 2>&1
  ); then
    printf '%s\n' "$out"
    exit 0
  fi
  sleep 2
done
printf '%s\n' "${out:-}" >&2
die "no master agreed within ${budget_ms} ms"
