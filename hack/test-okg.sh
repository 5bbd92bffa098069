#!/usr/bin/env bash
# Obtain the real OpenKruiseGame (OKG) manager for the okg e2e tier (tests/okg), built from the
# Go module github.com/openkruise/kruise-game at two targets and cached under
# ${KIDECAR_TEST_CACHE:-~/.cache/kidecar-test}:
#   release  the latest release (what every OKG user runs today);
#   master   the newest master commit, pinned by its pseudo-version so builds are reproducible.
# Only the first run pays (a cold build takes minutes on 2 cores); later runs print the cached
# paths and touch no network.
#
# The module has no `replace` directives, so it builds straight from its own go.mod/go.sum: the
# module's files are copied into the cache (src/okg-<version>, also where the tests take OKG's
# CRDs and ClusterRole from: nothing of OKG is copied into this repository) and `go build` runs
# there, as OKG's own Dockerfile does.
#
# Where the files come from: `go mod download` from the Go module proxy. A proxy may refuse a
# version (some serve releases only, not master pseudo-versions); then, if KIDECAR_OKG_SOURCE_GIT
# names a git directory holding OKG's history (a clone or a mirror of the public repository),
# the pinned commit is taken from it with `git archive`; the commit is the one the
# pseudo-version names, so the build is the same either way.
#
# Usage: hack/test-okg.sh   # build what is missing, print OKG_MANAGER_RELEASE=... etc.
# Env:   KIDECAR_OKG_RELEASE_VERSION (default below), KIDECAR_OKG_MASTER_VERSION (default below,
#        a pseudo-version; `go list -m github.com/openkruise/kruise-game@master` gives the
#        newest where the proxy serves it), KIDECAR_OKG_SOURCE_GIT, KIDECAR_TEST_CACHE.
# Output (stdout), for each target T in RELEASE, MASTER:
#   OKG_VERSION_T=<module version>  OKG_MANAGER_T=<binary>
#   OKG_CRDS_T=<dir of OKG's CRD YAML>  OKG_ROLE_T=<OKG's ClusterRole YAML>
set -euo pipefail

MODULE=github.com/openkruise/kruise-game
RELEASE_VERSION="${KIDECAR_OKG_RELEASE_VERSION:-v1.0.0}"
# master at d76ace2148a5 (2026-04-23), which includes the minimal spec patch of OKG #283.
MASTER_VERSION="${KIDECAR_OKG_MASTER_VERSION:-v1.0.1-0.20260423094310-d76ace2148a5}"
CACHE="${KIDECAR_TEST_CACHE:-$HOME/.cache/kidecar-test}"

log() { echo "[test-okg] $*" >&2; }

# The commit a version names: the hash of a pseudo-version, else the version itself (a tag).
commit_of() {
  local version="$1"
  if [[ "$version" =~ -([0-9a-f]{12})$ ]]; then echo "${BASH_REMATCH[1]}"; else echo "$version"; fi
}

# One string field of the JSON object on stdin ("" when absent or not JSON).
json_field() {
  python3 -c 'import json,sys
try: print(json.load(sys.stdin).get(sys.argv[1], ""))
except ValueError: print("")' "$1"
}

# Put the module's files at $2 (from the proxy, else from KIDECAR_OKG_SOURCE_GIT).
fetch_source() {
  local version="$1" dest="$2" info dir error
  info="$(go mod download -json "$MODULE@$version" 2>/dev/null || true)"
  dir="$(json_field Dir <<<"$info")"
  if [ -n "$dir" ] && [ -d "$dir" ]; then
    cp -R "$dir/." "$dest/" && chmod -R u+w "$dest" || return 1
    log "$MODULE@$version: module files from the Go module proxy ($dir)"
    return 0
  fi
  error="$(json_field Error <<<"$info")"
  error="${error:-no answer}"
  if [ -z "${KIDECAR_OKG_SOURCE_GIT:-}" ]; then
    log "the Go module proxy did not give $MODULE@$version: $error"
    log "set KIDECAR_OKG_SOURCE_GIT to a git directory with OKG's history (a clone of the public repository) to build it from there, or pick another version with KIDECAR_OKG_RELEASE_VERSION / KIDECAR_OKG_MASTER_VERSION"
    return 1
  fi
  local commit
  commit="$(commit_of "$version")"
  log "the Go module proxy did not give $MODULE@$version ($error); taking commit $commit from $KIDECAR_OKG_SOURCE_GIT"
  git --git-dir="$KIDECAR_OKG_SOURCE_GIT" archive --format=tar "$commit" | tar -x -C "$dest" || {
    log "$KIDECAR_OKG_SOURCE_GIT has no commit $commit"
    return 1
  }
}

# Build OKG's manager at $1 into $CACHE/bin/okg-$1/manager (module files kept in src/).
# Every step says `|| return 1`: it runs on the left of `||`, where `set -e` does not apply.
build_okg() {
  local version="$1"
  local bin_dir="$CACHE/bin/okg-$version" src="$CACHE/src/okg-$version"
  command -v go >/dev/null || { log "go is not installed; it is needed to build OKG's manager"; return 1; }
  rm -rf "$src.tmp" && mkdir -p "$src.tmp" "$bin_dir" || return 1
  fetch_source "$version" "$src.tmp" || return 1
  log "building OKG's manager $version in $src (first run only; a few minutes)"
  local started=$SECONDS
  (cd "$src.tmp" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go build -trimpath -ldflags '-s -w' -o "$bin_dir/manager.tmp" .) || return 1
  rm -rf "$src" && mv "$src.tmp" "$src" && mv "$bin_dir/manager.tmp" "$bin_dir/manager" || return 1
  log "built $bin_dir/manager in $((SECONDS - started)) s"
}

status=0
for target in RELEASE MASTER; do
  var="${target}_VERSION"
  version="${!var}"
  manager="$CACHE/bin/okg-$version/manager"
  src="$CACHE/src/okg-$version"
  if ! { [ -x "$manager" ] && [ -d "$src/config/crd/bases" ]; }; then
    build_okg "$version" || { log "no OKG manager for $target ($version)"; status=1; continue; }
  fi
  echo "OKG_VERSION_$target=$version"
  echo "OKG_MANAGER_$target=$manager"
  echo "OKG_CRDS_$target=$src/config/crd/bases"
  echo "OKG_ROLE_$target=$src/config/rbac/role.yaml"
done
exit $status
