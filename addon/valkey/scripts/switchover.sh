#!/bin/sh
# switchover: moves the master away from the current one (to the candidate when KubeBlocks names
# one) without losing an acknowledged write. Replica priorities the switchover changes are kept
# in $DATA_DIR/switchover.state, so a run killed at its timeout and run again restores them.
#   switchover.sh --timeout-ms MS
set -eu
# shellcheck source=SCRIPTDIR/common.sh
. "${0%/*}/common.sh"

budget_from_args "$@"
need DATA_DIR KB_SWITCHOVER_CURRENT_FQDN
VALKEY_COORDINATOR_POD=$KB_SWITCHOVER_CURRENT_FQDN
export VALKEY_COORDINATOR_POD
unset VALKEY_COORDINATOR_CANDIDATE
if [ -n "${KB_SWITCHOVER_CANDIDATE_FQDN:-}" ]; then
  exec_coordinator switchover --candidate "$KB_SWITCHOVER_CANDIDATE_FQDN" \
    --state-file "$DATA_DIR/switchover.state"
fi
exec_coordinator switchover --state-file "$DATA_DIR/switchover.state"
