#!/bin/sh
# accountProvision: sets (or deletes) one ACL user on every data pod and saves each pod's ACL
# file; exits 1 unless every pod took it. KubeBlocks passes KB_ACCOUNT_NAME, KB_ACCOUNT_PASSWORD
# and KB_ACCOUNT_STATEMENT (the account's ACL rules, or `delete`), handed over here as the
# binary's environment twins, so the password never reaches a command line.
#   account-provision.sh --timeout-ms MS
set -eu
# shellcheck source=SCRIPTDIR/common.sh
. "${0%/*}/common.sh"

budget_from_args "$@"
need KB_ACCOUNT_NAME KB_ACCOUNT_STATEMENT
VALKEY_COORDINATOR_ACCOUNT_NAME=$KB_ACCOUNT_NAME
VALKEY_COORDINATOR_ACCOUNT_STATEMENT=$KB_ACCOUNT_STATEMENT
VALKEY_COORDINATOR_ACCOUNT_PASSWORD=${KB_ACCOUNT_PASSWORD:-}
export VALKEY_COORDINATOR_ACCOUNT_NAME VALKEY_COORDINATOR_ACCOUNT_STATEMENT VALKEY_COORDINATOR_ACCOUNT_PASSWORD
exec_coordinator account-provision
