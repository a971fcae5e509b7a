#!/usr/bin/env bash
# Installs the iptables the namespace network's delay fault runs into .deps/iptables/<version>:
#   1.8.9      iptables-legacy (the x_tables backend: the kernel has CONFIG_IP_NF_IPTABLES and the
#              NFQUEUE target, but no nft `queue` expression), from Debian bookworm's iptables
#              package and its library packages, unpacked with dpkg -x: nothing is installed
#              system-wide. bin/iptables-legacy is a wrapper that points the binary at the unpacked
#              libraries (LD_LIBRARY_PATH) and extensions (XTABLES_LIBDIR).
# Idempotent: an install whose wrapper already reports the right version is left alone.
# Prints the install root on success; exits non-zero naming the source that could not be reached.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="${IPTABLES_DEPS_DIR:-$root/.deps/iptables}"
version=1.8.9
suite=bookworm
dir="$deps/$version"
bin="$dir/bin"
work="$deps/.download"

die() { echo "install-netfilter: $*" >&2; exit 1; }
log() { echo "install-netfilter: $*" >&2; }

has_version() { [ -x "$1" ] && "$1" -V 2>/dev/null | grep -q "^iptables v$version (legacy)"; }

if has_version "$bin/iptables-legacy"; then
  echo "$deps"
  exit 0
fi

# shellcheck source=tests/debian-mirror.sh
. "$root/tests/debian-mirror.sh"

# A private apt configuration in $work/apt: the machine's Debian mirror for $suite, with its own
# lists and cache, so the system's apt state is untouched.
log "installing iptables $version (legacy) from Debian $suite"
a="$work/apt"
uri="$(debian_uri)"
mkdir -p "$a/parts" "$a/lists/partial" "$a/cache/archives/partial"
cat >"$a/parts/netfilter.sources" <<SRC
Types: deb
URIs: $uri
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$a/parts"
          -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache" -o "APT::Sandbox::User=root")
apt-get "${apt_opts[@]}" -qq update >&2 || die "cannot reach the Debian mirror $uri ($suite)"

# iptables and every library package it depends on (the legacy binary needs only the first
# three; the rest keep iptables-nft and the extensions that link them working too).
packages=(iptables libip4tc2 libip6tc2 libxtables12 libmnl0 libnftnl11 libnetfilter-conntrack3
          libnfnetlink0)
debs="$work/debs"
rm -rf "$debs"; mkdir -p "$debs"
( cd "$debs" && apt-get "${apt_opts[@]}" -qq download "${packages[@]}" >&2 ) \
  || die "cannot download ${packages[*]} from Debian $suite"
got=("$debs"/iptables_*.deb)
[[ "${got[0]##*/}" == iptables_"$version"-* ]] \
  || die "Debian $suite's iptables is not $version: ${got[0]##*/}"

rm -rf "$dir"; mkdir -p "$dir/root" "$bin"
for d in "$debs"/*.deb; do dpkg -x "$d" "$dir/root"; done
lib="$dir/root/usr/lib/x86_64-linux-gnu"
cat >"$bin/iptables-legacy" <<WRAP
#!/bin/sh
LD_LIBRARY_PATH="$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" XTABLES_LIBDIR="$lib/xtables" exec "$dir/root/usr/sbin/iptables-legacy" "\$@"
WRAP
chmod 0755 "$bin/iptables-legacy"
rm -rf "$work"
has_version "$bin/iptables-legacy" || die "iptables-legacy $version does not start (missing libraries?)"
log "$("$bin/iptables-legacy" -V)"
echo "$deps"
