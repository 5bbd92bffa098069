"""Edit one pod spec for ``kidecar inject``: the sidecar container, its volumes, the pod fields.

What is added, and why:

- the ``kidecar`` container: ``kidecar run`` with ``POD_NAME``/``POD_NAMESPACE`` from the downward
  API, the config from the ConfigMap volume at ``/opt/sidecar``, the plugins' ports, the config's
  ``resources`` as requests and limits, probes on the admin server, and a locked-down
  ``securityContext`` (see :func:`security_context`);
- ``sidecarstartorder: Before``: a native sidecar (an init container with ``restartPolicy:
  Always``, Kubernetes ≥ 1.29) whose startup probe makes the kubelet start the game only once the
  sidecar answers; ``After``: a regular container after the game's;
- the admin server listens on all interfaces (``KIDECAR_ADMIN_LISTEN=:9090``) instead of its
  loopback default, because the kubelet probes it on the pod IP (and Prometheus scrapes
  ``/metrics`` there); it serves no secrets;
- shared volumes (``emptyDir``) mounted into the sidecar and the main container; when the main
  container already mounts that path, the sidecar mounts the same volume instead;
- ``shareProcessNamespace: true`` when a plugin signals the game's process.

A container called ``kidecar`` is replaced where it stands, so that injecting twice is the same as
injecting once.
"""

from __future__ import annotations

from typing import Any

import attrs

from kidecar_core._config.catalog import DEFAULT_CONFIG_MAP
from kidecar_core._config.loader import DEFAULT_CONFIG_PATH, Resources, StartOrder
from kidecar_core._plugins.podspec import PodRequirements
from kidecar_core.errors import KidecarError

SIDECAR_NAME = "kidecar"
"""Name of the sidecar container; a container of that name is the one a re-run replaces."""
DEFAULT_ADMIN_PORT = 9090
CONFIG_VOLUME = "kidecar-config"
CONFIG_DIR = DEFAULT_CONFIG_PATH.rpartition("/")[0]
ADMIN_PORT_NAME = "kidecar-admin"
SIDECAR_USER = 65532
"""uid/gid of the sidecar when it needs no privileges (the "nonroot" user of distroless images)."""


class InjectError(KidecarError):
    """The workload or the plugins' requirements cannot be injected; the message says why."""


@attrs.frozen
class Sidecar:
    """What the sidecar config asks of the pod: the plugins' needs, resources, start order."""

    requirements: PodRequirements = attrs.field(factory=PodRequirements)
    resources: Resources = attrs.field(factory=Resources)
    start_order: StartOrder = "Before"


@attrs.frozen
class InjectOptions:
    """Choices of the command line (``kidecar inject --help``)."""

    image: str
    config_map: str = DEFAULT_CONFIG_MAP
    """ConfigMap holding ``config.yaml``; mounted into the sidecar at ``/opt/sidecar``."""
    container: str | None = None
    """The game's main container (shared volumes are mounted into it); default: the first."""
    admin_port: int = DEFAULT_ADMIN_PORT
    service_account: str | None = SIDECAR_NAME
    """Set as ``serviceAccountName`` when the pod has none (or ``default``); ``None``: never."""


def inject_pod_spec(
    spec: dict[str, Any],
    sidecar: Sidecar,
    options: InjectOptions,
    label: str,
    notes: list[str],
) -> dict[str, Any]:
    """Add (or update) the sidecar in ``spec``, a pod spec the caller owns; return it.

    ``label`` names the document in errors and ``notes`` (``document 2 (Deployment web)``).
    """
    containers = spec.get("containers")
    if not isinstance(containers, list) or not all(isinstance(c, dict) for c in containers):
        raise InjectError(f"{label}: the pod spec has no list of containers")
    init = spec.get("initContainers")
    if init is not None and not isinstance(init, list):
        raise InjectError(f"{label}: initContainers is not a list")
    init = init or []
    old_place = _remove_sidecar(containers, init)
    main = _main_container(containers, options.container, label)

    mounts = _mounts(spec, main, sidecar, options, label)
    ports = [{"name": ADMIN_PORT_NAME, "containerPort": options.admin_port, "protocol": "TCP"}]
    ports += [
        {"name": p.name, "containerPort": p.port, "protocol": p.protocol}
        for p in sidecar.requirements.ports
    ]
    _check_ports(ports, containers, init, label)
    container = sidecar_container(
        sidecar,
        options,
        ports=ports,
        mounts=mounts,
        security=security_context(spec, main, sidecar, label, notes),
    )
    if sidecar.start_order == "Before":
        init.insert(old_place[1] if old_place and old_place[0] == "init" else 0, container)
    else:
        containers.insert(
            old_place[1] if old_place and old_place[0] == "containers" else len(containers),
            container,
        )
    _set_init_containers(spec, init)
    if sidecar.requirements.share_process_namespace:
        spec["shareProcessNamespace"] = True
    _service_account(spec, options, label, notes)
    return spec


def _mounts(
    spec: dict[str, Any],
    main: dict[str, Any],
    sidecar: Sidecar,
    options: InjectOptions,
    label: str,
) -> list[dict[str, Any]]:
    """The sidecar's volume mounts: the config, and each volume it shares with the game (the
    game's own mount of that path reused, else an ``emptyDir`` added to both)."""
    mounts: list[dict[str, Any]] = [
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True}
    ]
    volumes = _list(spec, "volumes", label)
    _put_volume(volumes, {"name": CONFIG_VOLUME, "configMap": {"name": options.config_map}})
    for shared in sidecar.requirements.shared_volumes:
        main_mounts = _list(main, "volumeMounts", label)
        existing = next(
            (m for m in main_mounts if _same_path(m.get("mountPath"), shared.mount_path)), None
        )
        if existing is not None:
            volume_name = existing["name"]
        else:
            volume_name = shared.name
            if not any(v.get("name") == volume_name for v in volumes):
                volumes.append({"name": volume_name, "emptyDir": {}})
            main_mounts.append({"name": volume_name, "mountPath": shared.mount_path})
        mounts.append({"name": volume_name, "mountPath": shared.mount_path})
    return mounts


def _set_init_containers(spec: dict[str, Any], init: list[Any]) -> None:
    """``initContainers`` set to ``init``, dropped when empty, placed before the containers."""
    if not init:
        spec.pop("initContainers", None)
    elif "initContainers" in spec:
        spec["initContainers"] = init  # it may have been null
    else:
        # Where people write it: right before the containers.
        items = list(spec.items())
        at = next(i for i, (k, _) in enumerate(items) if k == "containers")
        items.insert(at, ("initContainers", init))
        spec.clear()
        spec.update(items)


def sidecar_container(
    sidecar: Sidecar,
    options: InjectOptions,
    *,
    ports: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    security: dict[str, Any],
) -> dict[str, Any]:
    """The ``kidecar`` container."""
    before = sidecar.start_order == "Before"
    container: dict[str, Any] = {"name": SIDECAR_NAME, "image": options.image}
    if before:
        container["restartPolicy"] = "Always"
    # An explicit command works with any image that has kidecar installed, including images
    # built FROM kidecar's with extra plugins and a different entrypoint.
    container["command"] = ["kidecar", "run"]
    container["env"] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "KIDECAR_CONFIG", "value": DEFAULT_CONFIG_PATH},
        {"name": "KIDECAR_ADMIN_LISTEN", "value": f":{options.admin_port}"},
    ]
    container["ports"] = ports
    resources = _resources(sidecar.resources)
    if resources is not None:
        container["resources"] = resources
    container["volumeMounts"] = mounts
    if before:
        # The kubelet starts the next container only when a native sidecar's startup probe
        # succeeded: this is what makes "Before" mean "the sidecar is up before the game".
        container["startupProbe"] = _probe("/healthz", periodSeconds=1, failureThreshold=30)
    container["livenessProbe"] = _probe("/healthz", periodSeconds=10, failureThreshold=3)
    container["readinessProbe"] = _probe("/readyz", periodSeconds=5, failureThreshold=3)
    container["securityContext"] = security
    return container


def security_context(
    spec: dict[str, Any], main: dict[str, Any], sidecar: Sidecar, label: str, notes: list[str]
) -> dict[str, Any]:
    """Non-root, read-only root filesystem, no capabilities, no privilege escalation.

    A plugin that signals the game (``share_process_namespace``) can only do so as the game's
    own user, or with ``CAP_KILL``, which in Kubernetes takes effect for root only.  So the
    sidecar runs as the game's user when the pod spec names it (no capability needed), and
    otherwise as root with ``KILL`` as its only capability, which is reported in ``notes``.
    """
    locked = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if not sidecar.requirements.share_process_namespace:
        return {
            "runAsNonRoot": True,
            "runAsUser": SIDECAR_USER,
            "runAsGroup": SIDECAR_USER,
            **locked,
        }
    pod_context = spec.get("securityContext") or {}
    main_context = main.get("securityContext") or {}
    uid = main_context.get("runAsUser", pod_context.get("runAsUser"))
    gid = main_context.get("runAsGroup", pod_context.get("runAsGroup"))
    if isinstance(uid, int) and uid != 0:
        user: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": uid}
        if isinstance(gid, int):
            user["runAsGroup"] = gid
        return {**user, **locked}
    if uid is None and main_context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
        raise InjectError(
            f"{label}: a plugin signals the game, which runs as a non-root user the pod spec does "
            f"not name; set securityContext.runAsUser on container {main.get('name')!r} so that "
            "the sidecar can run as the same user"
        )
    who = "root" if uid == 0 else "the image's user (often root)"
    notes.append(
        f"{label}: a plugin signals the game, which runs as {who}: the sidecar runs as root with "
        f"only the KILL capability. Set securityContext.runAsUser on container "
        f"{main.get('name')!r} to run both as that user instead."
    )
    return {
        "runAsNonRoot": False,
        "runAsUser": 0,
        **locked,
        "capabilities": {"drop": ["ALL"], "add": ["KILL"]},
    }


def _probe(path: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": ADMIN_PORT_NAME}, "timeoutSeconds": 2, **timing}


def _resources(resources: Resources) -> dict[str, Any] | None:
    values = {k: v for k, v in (("cpu", resources.cpu), ("memory", resources.memory)) if v}
    if not values:
        return None
    return {"requests": dict(values), "limits": dict(values)}


def _remove_sidecar(
    containers: list[dict[str, Any]], init: list[dict[str, Any]]
) -> tuple[str, int] | None:
    """Remove an existing sidecar; return where it was (``("init" | "containers", index)``)."""
    place: tuple[str, int] | None = None
    for where, items in (("init", init), ("containers", containers)):
        for i, c in enumerate(items):
            if isinstance(c, dict) and c.get("name") == SIDECAR_NAME:
                place = (where, i)
                del items[i]
                break
    return place


def _main_container(
    containers: list[dict[str, Any]], name: str | None, label: str
) -> dict[str, Any]:
    if not containers:
        raise InjectError(f"{label}: the pod has no containers besides {SIDECAR_NAME!r}")
    if name is None:
        return containers[0]
    for c in containers:
        if c.get("name") == name:
            return c
    names = ", ".join(repr(c.get("name")) for c in containers)
    raise InjectError(f"{label}: no container named {name!r} (containers: {names})")


def _list(owner: dict[str, Any], key: str, label: str) -> list[dict[str, Any]]:
    """``owner[key]`` as a list (created when missing)."""
    value = owner.get(key)
    if value is None:
        value = owner[key] = []
    if not isinstance(value, list):
        raise InjectError(f"{label}: {key} is not a list")
    return value


def _put_volume(volumes: list[dict[str, Any]], volume: dict[str, Any]) -> None:
    """Replace the volume of the same name where it stands, or append it."""
    for i, v in enumerate(volumes):
        if v.get("name") == volume["name"]:
            volumes[i] = volume
            return
    volumes.append(volume)


def _same_path(a: object, b: str) -> bool:
    return isinstance(a, str) and (a.rstrip("/") or "/") == (b.rstrip("/") or "/")


def _check_ports(
    ports: list[dict[str, Any]],
    containers: list[dict[str, Any]],
    init: list[dict[str, Any]],
    label: str,
) -> None:
    """The sidecar's ports must be free in the pod's network namespace."""
    taken: dict[tuple[int, str], str] = {}
    running = containers + [c for c in init if c.get("restartPolicy") == "Always"]
    for c in running:
        for p in c.get("ports") or []:
            taken[(p.get("containerPort"), p.get("protocol", "TCP"))] = (
                f"container {c.get('name')!r}"
            )
    for p in ports:
        key = (p["containerPort"], p["protocol"])
        if key in taken:
            hint = " (choose another with --admin-port)" if p["name"] == ADMIN_PORT_NAME else ""
            raise InjectError(
                f"{label}: the sidecar's port {p['containerPort']}/{p['protocol']} ({p['name']}) "
                f"is already used by {taken[key]}{hint}"
            )
        taken[key] = f"the sidecar's port {p['name']!r}"


def _service_account(
    spec: dict[str, Any], options: InjectOptions, label: str, notes: list[str]
) -> None:
    wanted = options.service_account
    if not wanted:
        return
    current = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if current in (None, "", "default"):
        spec["serviceAccountName"] = wanted
        spec.pop("serviceAccount", None)
    elif current != wanted:
        notes.append(
            f"{label}: the pod runs as ServiceAccount {current!r}: bind the kidecar Role "
            "(deploy/base/rbac.yaml) to it, or the sidecar cannot write its results"
        )
