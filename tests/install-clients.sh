#!/usr/bin/env bash
# Installs the unmodified sentinel-aware client libraries the end-to-end tests drive, into
# git-ignored folders under .deps/: a Python venv (.deps/py) with redis-py and valkey-py; a Node
# prefix (.deps/node) with ioredis, iovalkey and node-redis; the Java drivers in
# tests/clients/java (Jedis 7, Jedis 8, Lettuce 7), each library copied from a local Maven
# repository (.deps/maven) into .deps/java/<client>/lib and the driver compiled with javac into
# .deps/java/<client>/classes; the Go driver in tests/clients/go (go-redis, rueidis, valkey-go,
# pinned by its go.mod and go.sum) built into .deps/go-bin. Versions are pinned so a test run is
# reproducible; bump them here (or in the pom.xml / go.mod) deliberately. Idempotent: a folder
# whose stamp matches the pinned versions and the driver sources is left alone.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="$root/.deps"
mkdir -p "$deps"

python_packages=("redis==8.1.0" "valkey==6.2.0")
node_packages=("ioredis@6.0.0" "iovalkey@0.4.0" "redis@5.9.0")

py="$deps/py"
py_stamp="${python_packages[*]}"
if [[ "$(cat "$py/.stamp" 2>/dev/null)" != "$py_stamp" ]]; then
  command -v python3 >/dev/null || { echo "install-clients.sh: python3 not found" >&2; exit 1; }
  rm -rf "$py"
  python3 -m venv "$py"
  "$py/bin/pip" install --quiet --disable-pip-version-check "${python_packages[@]}"
  echo "$py_stamp" >"$py/.stamp"
fi

node="$deps/node"
node_stamp="${node_packages[*]}"
if [[ "$(cat "$node/.stamp" 2>/dev/null)" != "$node_stamp" ]]; then
  command -v npm >/dev/null || { echo "install-clients.sh: npm not found" >&2; exit 1; }
  rm -rf "$node"
  mkdir -p "$node"
  npm install --silent --no-audit --no-fund --prefix "$node" "${node_packages[@]}"
  echo "$node_stamp" >"$node/.stamp"
fi

# A stamp over the files that decide an install: a changed pin or driver source rebuilds it.
stamp_of() {
  cat "$@" | sha256sum | cut -d' ' -f1
}

clients="$root/tests/clients"
for client in jedis7 jedis8 lettuce; do
  out="$deps/java/$client"
  sources=("$clients/java/$client/pom.xml" "$clients/java/common/Driver.java" "$clients/java/$client"/src/*.java)
  java_stamp="$(stamp_of "${sources[@]}")"
  if [[ "$(cat "$out/.stamp" 2>/dev/null)" != "$java_stamp" ]]; then
    command -v mvn >/dev/null || { echo "install-clients.sh: mvn not found" >&2; exit 1; }
    command -v javac >/dev/null || { echo "install-clients.sh: javac not found" >&2; exit 1; }
    rm -rf "$out"
    mkdir -p "$out/classes"
    maven=(mvn -B -q -Dmaven.repo.local="$deps/maven" -f "$clients/java/$client/pom.xml"
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$out/lib")
    # Offline first: once the local repository has the pins, no registry is asked again.
    "${maven[@]}" -o >/dev/null 2>&1 || "${maven[@]}"
    javac -nowarn -d "$out/classes" -cp "$out/lib/*" "$clients/java/common/Driver.java" "$clients/java/$client"/src/*.java
    echo "$java_stamp" >"$out/.stamp"
  fi
done

go_bin="$deps/go-bin"
go_stamp="$(stamp_of "$clients/go/go.mod" "$clients/go/go.sum" "$clients/go"/*.go)"
if [[ "$(cat "$go_bin/.stamp" 2>/dev/null)" != "$go_stamp" ]]; then
  command -v go >/dev/null || { echo "install-clients.sh: go not found" >&2; exit 1; }
  rm -rf "$go_bin"
  mkdir -p "$go_bin"
  (cd "$clients/go" && go build -mod=readonly -o "$go_bin/sentinel-client" .)
  echo "$go_stamp" >"$go_bin/.stamp"
fi
