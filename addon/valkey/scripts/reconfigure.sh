#!/bin/sh
# reconfigure: CONFIG SETs on this pod every directive of the updated valkey.conf whose running
# value differs; a static or immutable one waits for the restart KubeBlocks does for it.
#   reconfigure.sh --timeout-ms MS [NAME VALUE]
# KubeBlocks calls it once per changed parameter, appending NAME VALUE; those are ignored: the
# whole file is compared each time (the second call finds nothing left to do). The updated file
# is the one KubeBlocks names in KB_CONFIG_FILES_UPDATED (path:sha256, checked by kbagent before
# the call), else the template mount's valkey.conf.
set -eu
# shellcheck source=SCRIPTDIR/common.sh
. "${0%/*}/common.sh"

budget_from_args "$@"
need CONF_DIR VALKEY_COORDINATOR_DATA_POD
pod=$(pod_name)
[ -n "$pod" ] || die "KB_AGENT_POD_NAME is not set"
VALKEY_COORDINATOR_POD=$(pod_entry "$pod" "$VALKEY_COORDINATOR_DATA_POD")
export VALKEY_COORDINATOR_POD
if [ -n "${KB_CONFIG_FILES_UPDATED:-}" ]; then
  exec_coordinator reconfigure --updated-files "$KB_CONFIG_FILES_UPDATED"
fi
exec_coordinator reconfigure --config-file "$CONF_DIR/valkey.conf"
