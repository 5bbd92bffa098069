# syntax=docker/dockerfile:1
#
# kidecar: the sidecar container of an OpenKruiseGame game-server pod.
#
#   docker build -t kidecar:0.1.0 .
#   kidecar inject -f gameserverset.yaml --config config.yaml   # adds it to a workload
#
# Without a container engine, `hack/check-image.sh` lints this file and runs the same install
# steps (wheel build, fresh virtualenv, `kidecar --version`, `kidecar plugins`).
#
# Ports (EXPOSE documents them; the configuration decides what really listens):
#   5000  hot_update: `POST /hot-update`, `GET /hot-update` (plugin config `listen`, default
#         `:5000`).  Without an `auth` token the plugin binds it to 127.0.0.1 only: the game
#         container reaches it through the pod's shared network namespace.
#   9090  admin server: `/healthz`, `/readyz`, `/metrics`.  Listens on 127.0.0.1:9090 unless
#         `--admin-listen` or `KIDECAR_ADMIN_LISTEN` says otherwise; kubelet probes and
#         Prometheus scrapes need all interfaces (`kidecar inject` sets
#         `KIDECAR_ADMIN_LISTEN=:9090`).
#
# Files:
#   /opt/sidecar/config.yaml  the configuration (a ConfigMap mounted there; `$KIDECAR_CONFIG`
#                             overrides the path).
#   /app/downloads            hot_update's `fileDir`: an emptyDir shared with the game container,
#                             mounted there by `kidecar inject`; writable by the kidecar user.
#
# User: UID/GID 65532, not root; the image also runs with `readOnlyRootFilesystem: true` (it
# writes only to /app/downloads).  That is enough for probing, for hot update by HTTP request
# (`loadPatchType: request`) and for every Kubernetes write.  Hot update by signal
# (`loadPatchType: signal`) sends a signal to the game's process in another container: the pod
# needs `shareProcessNamespace: true`, and Linux lets a process signal another one only when both
# run as the same user or the sender has CAP_KILL.  So either
#   * run the sidecar as the game's UID (`securityContext.runAsUser`; the recommended way), or
#   * run the sidecar as root with only that capability:
#       securityContext:
#         runAsUser: 0
#         runAsNonRoot: false
#         capabilities: {drop: [ALL], add: [KILL]}
# Adding KILL alone to a non-root sidecar does not work: Kubernetes gives added capabilities
# to root processes only (a non-root process loses them when it starts).  `kidecar inject` does
# this for you: shareProcessNamespace, then the game's runAsUser when the pod spec names it, else
# root with only KILL.

ARG PYTHON_IMAGE=python:3.11-slim

# -- build: the kidecar wheel, installed with its runtime dependencies into /opt/kidecar --------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kidecar_core/ kidecar_core/
COPY kidecar_plugins/ kidecar_plugins/
# The virtualenv has no pip of its own: the build stage's pip installs into it, so the final
# image holds kidecar and its runtime dependencies and nothing to build or install with.
RUN pip wheel --no-deps --wheel-dir /dist . \
    && python -m venv --without-pip /opt/kidecar \
    && pip --python /opt/kidecar/bin/python install /dist/kidecar-*.whl \
    && /opt/kidecar/bin/kidecar --version

# -- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/kidecar/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The base image's own pip, setuptools and wheel are build tools kidecar never uses at run time.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --system --gid 65532 kidecar \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kidecar \
    && mkdir -p /app/downloads /opt/sidecar \
    && chown 65532:65532 /app/downloads
COPY --from=build /opt/kidecar /opt/kidecar
WORKDIR /app
USER 65532:65532
EXPOSE 5000 9090
ENTRYPOINT ["kidecar", "run"]
