#!/bin/sh
# memberLeave: makes the leaving pod safe to remove (fails over first if it is the master).
#   member-leave.sh --timeout-ms MS
set -eu
# shellcheck source=SCRIPTDIR/common.sh
. "${0%/*}/common.sh"

budget_from_args "$@"
need KB_LEAVE_MEMBER_POD_FQDN
VALKEY_COORDINATOR_POD=$KB_LEAVE_MEMBER_POD_FQDN
export VALKEY_COORDINATOR_POD
exec_coordinator member-leave
