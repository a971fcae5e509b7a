# shellcheck shell=bash
# Sourced by the installers that fetch Debian packages (tests/install-valkey.sh,
# tests/install-netfilter.sh): the machine's Debian mirror, read from its apt sources, so a
# private apt configuration can reach the same mirror without touching the system's apt state.
# The sourcing script defines die().

# The machine's Debian mirror, from its apt sources.
debian_uri() {
  local uri
  uri="$(grep -hE '^URIs:.*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 | awk '{print $2}')"
  [ -n "$uri" ] || uri="$(grep -hE '^deb .*debian/? bookworm' /etc/apt/sources.list 2>/dev/null | head -n 1 | awk '{print $2}')"
  [ -n "$uri" ] || die "no Debian source entry found in /etc/apt to derive the Debian mirror from"
  echo "$uri"
}
