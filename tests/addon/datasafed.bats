#!/usr/bin/env bats
# The datasafed test double (tests/addon/datasafed) keeps datasafed's contract: the subcommands,
# flags, environment, output formats and exit status the backup ActionSet relies on, over real
# rclone on a local remote. Run by tests/tests/addon_charts.rs (bats from .deps/bats).

bats_require_minimum_version 1.5.0

setup() {
  datasafed="$BATS_TEST_DIRNAME/datasafed"
  repo="$BATS_TEST_TMPDIR/repo"
  mkdir -p "$repo"
  export DATASAFED_LOCAL_BACKEND_PATH="$repo"
  export DATASAFED_BACKEND_BASE_PATH="ns1/valkey-backup-1"
  unset DATASAFED_ENCRYPTION_ALGORITHM DATASAFED_KOPIA_REPO_ROOT
}

@test "push - streams stdin to the remote path under the base path" {
  run bash -c 'printf "snapshot-bytes" | "$0" push - dump.rdb' "$datasafed"
  [ "$status" -eq 0 ]
  [ "$output" = "" ]
  [ "$(cat "$repo/ns1/valkey-backup-1/dump.rdb")" = "snapshot-bytes" ]
}

@test "pull PATH - streams the object to stdout, byte for byte" {
  head -c 3000000 /dev/urandom >"$BATS_TEST_TMPDIR/big"
  "$datasafed" push - big.rdb <"$BATS_TEST_TMPDIR/big"
  "$datasafed" pull big.rdb - | cmp - "$BATS_TEST_TMPDIR/big"
}

@test "push and pull of local files, pull creating the parent folders" {
  printf 'user default on >pw ~* +@all\n' >"$BATS_TEST_TMPDIR/users.acl"
  "$datasafed" push "$BATS_TEST_TMPDIR/users.acl" acl/users.acl
  "$datasafed" pull acl/users.acl "$BATS_TEST_TMPDIR/out/deep/users.acl"
  cmp "$BATS_TEST_TMPDIR/users.acl" "$BATS_TEST_TMPDIR/out/deep/users.acl"
}

@test "a missing object fails pull with one Error line and exit 1, nothing on stdout" {
  run --separate-stderr "$datasafed" pull nope.rdb -
  [ "$status" -eq 1 ]
  [ "$output" = "" ]
  [[ "$stderr" == 'Error: pull "nope.rdb": object not found' ]]
}

@test "list: short, long and json formats name paths below the base path" {
  printf 'a' | "$datasafed" push - dump.rdb
  printf 'bb' | "$datasafed" push - acl/users.acl
  run "$datasafed" list /
  [ "$status" -eq 0 ]
  [ "$output" = "$(printf 'acl/\ndump.rdb')" ]
  run "$datasafed" list -o long dump.rdb
  long_line='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z'$'\t''1'$'\t''dump[.]rdb$'
  [[ "$output" =~ $long_line ]]
  run "$datasafed" list -r -f -o json /
  [ "$status" -eq 0 ]
  python3 -c 'import json,sys; e=json.loads(sys.argv[1]); assert sorted(x["path"] for x in e) == ["acl/users.acl", "dump.rdb"], e; assert all(not x["is_dir"] and x["mtime"] > 0 for x in e), e' "$output"
}

@test "list: filters and sort flags as datasafed has them" {
  printf '1' | "$datasafed" push - a.txt
  printf '333' | "$datasafed" push - b.rdb
  printf '22' | "$datasafed" push - c.txt
  run "$datasafed" list --name '*.txt' /
  [ "$output" = "$(printf 'a.txt\nc.txt')" ]
  run "$datasafed" list -s size --reverse /
  [ "$output" = "$(printf 'b.rdb\nc.txt\na.txt')" ]
  run "$datasafed" list -r -s size /
  [ "$status" -eq 1 ]
  [[ "$output" == *"[recursive sort]"* ]]
  run "$datasafed" list --newer-than "$(( $(date +%s) + 3600 ))" /
  [ "$output" = "" ]
}

@test "list of a missing directory fails, of the empty root does not" {
  run "$datasafed" list /
  [ "$status" -eq 0 ]
  [ "$output" = "" ]
  run "$datasafed" list missing/
  [ "$status" -eq 1 ]
  [ "$output" = "Error: directory not found" ]
}

@test "stat: totals of a file and of a folder, text and json" {
  printf 'abc' | "$datasafed" push - dump.rdb
  printf 'de' | "$datasafed" push - acl/users.acl
  run "$datasafed" stat dump.rdb
  [ "$output" = "$(printf 'TotalSize: 3\nEntries: 1\nDirs: 0\nFiles: 1')" ]
  run "$datasafed" stat --json /
  [ "$output" = '{"dirs":1,"entries":3,"files":2,"total_size":5}' ]
}

@test "rm: a file, a missing file (no error), a folder only with -r" {
  printf 'a' | "$datasafed" push - dump.rdb
  printf 'b' | "$datasafed" push - acl/users.acl
  "$datasafed" rm dump.rdb
  [ ! -e "$repo/ns1/valkey-backup-1/dump.rdb" ]
  "$datasafed" rm dump.rdb
  run "$datasafed" rm acl
  [ "$status" -eq 1 ]
  "$datasafed" rm -r acl
  [ ! -e "$repo/ns1/valkey-backup-1/acl" ]
}

@test "remote paths are cleaned: leading slash and ./ dropped, .. refused, a trailing / refused for push" {
  printf 'x' | "$datasafed" push - /./a/../b.rdb
  [ -f "$repo/ns1/valkey-backup-1/b.rdb" ]
  run "$datasafed" push - ../escape </dev/null
  [ "$status" -eq 1 ]
  [[ "$output" == *"prefixed with '..'"* ]]
  run "$datasafed" push - dir/ </dev/null
  [ "$status" -eq 1 ]
  [[ "$output" == *"ends with '/'"* ]]
}

@test "without DATASAFED_BACKEND_BASE_PATH paths are relative to the backend root" {
  unset DATASAFED_BACKEND_BASE_PATH
  printf 'x' | "$datasafed" push - top.rdb
  [ -f "$repo/top.rdb" ]
}

@test "the config file's [storage] section configures rclone, with root handled by datasafed" {
  unset DATASAFED_LOCAL_BACKEND_PATH
  mkdir -p "$BATS_TEST_TMPDIR/bucket"
  printf '[storage]\ntype = local\nroot = %s/bucket/\n' "$BATS_TEST_TMPDIR" >"$BATS_TEST_TMPDIR/datasafed.conf"
  printf 'x' | "$datasafed" -c "$BATS_TEST_TMPDIR/datasafed.conf" push - dump.rdb
  [ -f "$BATS_TEST_TMPDIR/bucket/ns1/valkey-backup-1/dump.rdb" ]
  run "$datasafed" --conf="$BATS_TEST_TMPDIR/datasafed.conf" getconf storage.type
  [ "$output" = "local" ]
  run "$datasafed" -c "$BATS_TEST_TMPDIR/missing.conf" list /
  [ "$status" -eq 1 ]
  [[ "$output" == Error:* ]]
}

@test "a missing DATASAFED_LOCAL_BACKEND_PATH is an error" {
  export DATASAFED_LOCAL_BACKEND_PATH="$BATS_TEST_TMPDIR/nowhere"
  run "$datasafed" list /
  [ "$status" -eq 1 ]
  [[ "$output" == *"specified by DATASAFED_LOCAL_BACKEND_PATH does not exist"* ]]
}

@test "gzip compression round-trips; unknown algorithms are refused like datasafed's enum flags" {
  printf 'compressible compressible compressible' | "$datasafed" push -z gzip - dump.rdb.gz
  gzip -t "$repo/ns1/valkey-backup-1/dump.rdb.gz"
  run "$datasafed" pull --decompress=gzip dump.rdb.gz -
  [ "$output" = "compressible compressible compressible" ]
  run "$datasafed" push -z brotli - x </dev/null
  [ "$status" -eq 1 ]
  [[ "$output" == *'invalid argument "brotli" for "-z, --compress" flag'* ]]
}

@test "zstd-fastest (what upstream ActionSets use) and lz4 round-trip through the real CLIs" {
  command -v zstd >/dev/null || skip "no zstd CLI"
  command -v lz4 >/dev/null || skip "no lz4 CLI"
  head -c 200000 /dev/urandom >"$BATS_TEST_TMPDIR/data"
  "$datasafed" push -z zstd-fastest - dump.rdb.zst <"$BATS_TEST_TMPDIR/data"
  zstd -t -q "$repo/ns1/valkey-backup-1/dump.rdb.zst"
  "$datasafed" pull -d zstd-fastest dump.rdb.zst - | cmp - "$BATS_TEST_TMPDIR/data"
  "$datasafed" push -z lz4 "$BATS_TEST_TMPDIR/data" dump.rdb.lz4
  "$datasafed" pull -d lz4 dump.rdb.lz4 - | cmp - "$BATS_TEST_TMPDIR/data"
}

@test "features the double does not implement are refused by name, never ignored" {
  export DATASAFED_ENCRYPTION_ALGORITHM=AES-256-CFB DATASAFED_ENCRYPTION_PASS_PHRASE=x
  run "$datasafed" push - x </dev/null
  [ "$status" -eq 1 ]
  [[ "$output" == *DATASAFED_ENCRYPTION_ALGORITHM* ]]
}

@test "wrong argument counts and unknown flags fail with exit 1" {
  run "$datasafed" push onlyone
  [ "$status" -eq 1 ]
  [[ "$output" == *"accepts 2 arg(s), received 1"* ]]
  run "$datasafed" list --bogus /
  [ "$status" -eq 1 ]
  [[ "$output" == *"unknown flag: --bogus"* ]]
}
