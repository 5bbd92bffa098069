#!/usr/bin/env bash
# Generate OpenKruise's own apps.kruise.io/v1alpha1 CRDs (SidecarSet among them) for the tests
# that check what `kidecar inject --sidecarset` prints, cached under
# ${KIDECAR_TEST_CACHE:-~/.cache/kidecar-test}. Only the first run pays (building controller-gen
# and generating took 47 s on 2 cores with empty Go caches); later runs print the cached paths
# and touch no network.
#
# Kruise's CRD YAML is in no Go module, but its Go types are: github.com/openkruise/kruise-api
# (package apps/v1alpha1). Kruise generates its CRDs from those types with controller-gen
# (sigs.k8s.io/controller-tools), and so does this script, with the version and options Kruise
# uses for this release: kruise-api v1.8.0's Makefile pins controller-gen v0.16.5, Kruise's
# committed CRDs (config/crd/bases) carry `controller-gen.kubebuilder.io/version: v0.16.5`, and
# Kruise's Makefile runs the `crd` generator with CRD_OPTIONS "crd:crdVersions=v1" and full
# descriptions. Kruise does not set generateEmbeddedObjectMeta (OpenKruiseGame does): its
# committed AdvancedCronJob CRD has no properties under an embedded ObjectMeta, as generated
# here; the option would change that CRD only, not the SidecarSet's.
#
# Both come from the Go module proxy: controller-gen is built from its own module (go.mod and
# go.sum of that release), and kruise-api's module files are copied into the cache
# (src/kruise-api-<version>) and the generator runs there, so its k8s.io dependencies are the
# ones kruise-api's go.mod names.
#
# Usage: hack/kruise-crds.sh   # build/generate what is missing, print the paths
# Env:   KIDECAR_KRUISE_API_VERSION, KIDECAR_CONTROLLER_GEN_VERSION (defaults below),
#        KIDECAR_TEST_CACHE.
# Output (stdout):
#   KRUISE_CRDS=<dir of the generated apps.kruise.io v1alpha1 CRD YAML>
#   KRUISE_SIDECARSET_CRD=<the SidecarSet CRD in it>
set -euo pipefail

KRUISE_API_MODULE=github.com/openkruise/kruise-api
KRUISE_API_VERSION="${KIDECAR_KRUISE_API_VERSION:-v1.8.0}"
CONTROLLER_GEN_VERSION="${KIDECAR_CONTROLLER_GEN_VERSION:-v0.16.5}"
CRD_OPTIONS="crd:crdVersions=v1"
CACHE="${KIDECAR_TEST_CACHE:-$HOME/.cache/kidecar-test}"
CONTROLLER_GEN="$CACHE/bin/controller-gen-$CONTROLLER_GEN_VERSION/controller-gen"
CRD_DIR="$CACHE/crds/kruise-api-$KRUISE_API_VERSION-controller-gen-$CONTROLLER_GEN_VERSION"
SIDECARSET_CRD="$CRD_DIR/apps.kruise.io_sidecarsets.yaml"

log() { echo "[kruise-crds] $*" >&2; }

# One string field of the JSON object on stdin ("" when absent or not JSON).
json_field() {
  python3 -c 'import json,sys
try: print(json.load(sys.stdin).get(sys.argv[1], ""))
except ValueError: print("")' "$1"
}

# Every step says `|| return 1`: it runs on the left of `||`, where `set -e` does not apply.
build_controller_gen() {
  local bin_dir started=$SECONDS
  bin_dir="$(dirname "$CONTROLLER_GEN")"
  command -v go >/dev/null || { log "go is not installed; it is needed to build controller-gen"; return 1; }
  rm -rf "$bin_dir.tmp" && mkdir -p "$bin_dir.tmp" || return 1
  log "building controller-gen $CONTROLLER_GEN_VERSION (first run only; about a minute)"
  # `go install pkg@version` builds with the module's own go.mod/go.sum, outside any module.
  (cd "$bin_dir.tmp" && GOBIN="$bin_dir.tmp" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags '-s -w' \
    "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION") \
    || { rm -rf "$bin_dir.tmp"; return 1; }
  rm -rf "$bin_dir" && mv "$bin_dir.tmp" "$bin_dir" || return 1
  log "built $CONTROLLER_GEN in $((SECONDS - started)) s"
}

generate_crds() {
  local src="$CACHE/src/kruise-api-$KRUISE_API_VERSION" info dir started=$SECONDS
  command -v go >/dev/null || { log "go is not installed; it is needed to generate Kruise's CRDs"; return 1; }
  info="$(go mod download -json "$KRUISE_API_MODULE@$KRUISE_API_VERSION" 2>/dev/null || true)"
  dir="$(json_field Dir <<<"$info")"
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    local error
    error="$(json_field Error <<<"$info")"
    log "the Go module proxy did not give $KRUISE_API_MODULE@$KRUISE_API_VERSION: ${error:-no answer}"
    return 1
  fi
  rm -rf "$src.tmp" "$CRD_DIR.tmp" && mkdir -p "$src.tmp" "$CRD_DIR.tmp" || return 1
  cp -R "$dir/." "$src.tmp/" && chmod -R u+w "$src.tmp" || return 1
  log "generating the CRDs of $KRUISE_API_MODULE@$KRUISE_API_VERSION/apps/v1alpha1 with controller-gen $CONTROLLER_GEN_VERSION $CRD_OPTIONS"
  (cd "$src.tmp" && GOFLAGS=-buildvcs=false \
    "$CONTROLLER_GEN" "$CRD_OPTIONS" paths=./apps/v1alpha1 "output:crd:dir=$CRD_DIR.tmp") \
    || { rm -rf "$src.tmp" "$CRD_DIR.tmp"; return 1; }
  [ -f "$CRD_DIR.tmp/$(basename "$SIDECARSET_CRD")" ] || {
    log "controller-gen wrote no $(basename "$SIDECARSET_CRD")"
    rm -rf "$src.tmp" "$CRD_DIR.tmp"
    return 1
  }
  rm -rf "$src" "$CRD_DIR" && mv "$src.tmp" "$src" && mv "$CRD_DIR.tmp" "$CRD_DIR" || return 1
  log "generated $(find "$CRD_DIR" -name '*.yaml' | wc -l) CRDs into $CRD_DIR in $((SECONDS - started)) s"
}

if [ ! -f "$SIDECARSET_CRD" ]; then
  [ -x "$CONTROLLER_GEN" ] || build_controller_gen || { log "no controller-gen $CONTROLLER_GEN_VERSION"; exit 1; }
  generate_crds || { log "no Kruise CRDs ($KRUISE_API_MODULE@$KRUISE_API_VERSION)"; exit 1; }
fi
echo "KRUISE_CRDS=$CRD_DIR"
echo "KRUISE_SIDECARSET_CRD=$SIDECARSET_CRD"
