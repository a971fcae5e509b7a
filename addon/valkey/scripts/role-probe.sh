#!/bin/sh
# roleProbe of a data pod: prints `primary EPOCH`, `secondary EPOCH` or `secondary`, or exits 1
# with empty stdout when no role can be proven (KubeBlocks keeps the last label).
#   role-probe.sh --timeout-ms MS
set -eu
# shellcheck source=SCRIPTDIR/common.sh
. "${0%/*}/common.sh"

budget_from_args "$@"
need DATA_DIR CONF_DIR VALKEY_COORDINATOR_DATA_POD
pod=$(pod_name)
[ -n "$pod" ] || die "KB_AGENT_POD_NAME is not set"
VALKEY_COORDINATOR_POD=$(pod_entry "$pod" "$VALKEY_COORDINATOR_DATA_POD")
export VALKEY_COORDINATOR_POD
priority=$(replica_priority)
exec_coordinator role-probe --startup-config "$DATA_DIR/startup.conf" --replica-priority "$priority"
