"""``kidecar inject --sidecarset NAME --selector K=V``: the sidecar as an OpenKruise SidecarSet.

OKG users run Kruise, whose SidecarSet webhook adds a sidecar to every new pod its selector
matches, on virtual nodes too: the game's manifests stay as they are.  :func:`sidecarset`
builds one (``apps.kruise.io/v1alpha1``, cluster-scoped) with exactly the container
:func:`~kidecar_core._inject.podedit.sidecar_container` makes for ``kidecar inject``: image,
command, env, ports, resources, probes, security context, the config volume and the plugins'
shared volumes.  ``sidecarstartorder: Before`` becomes a native sidecar in ``initContainers``
(``restartPolicy: Always``; Kruise ≥ 1.7, Kubernetes ≥ 1.29) with ``updateStrategy: {type:
NotUpdate}`` (Kruise's webhook refuses a native sidecar under its default RollingUpdate, as it
cannot update an init container in place: a changed SidecarSet reaches new pods only), ``After``
a container injected after the game's (``podInjectPolicy: AfterAppContainer``).

What a SidecarSet cannot do to the pod is returned as notes for the user: the game's container
mounting a shared volume, ``shareProcessNamespace``, the ServiceAccount.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kidecar_core._inject.podedit import (
    ADMIN_PORT_NAME,
    CONFIG_DIR,
    CONFIG_VOLUME,
    InjectError,
    InjectOptions,
    Sidecar,
    security_context,
    sidecar_container,
)
from kidecar_core._store.validation import (
    is_dns1123_label,
    is_dns1123_subdomain,
    label_value_problem,
    qualified_name_problem,
)

API_VERSION = "apps.kruise.io/v1alpha1"


def parse_selector(pairs: Sequence[str]) -> dict[str, str]:
    """``["K=V", ...]`` as ``matchLabels``; :class:`InjectError` for a bad or missing pair.

    At least one is required: a SidecarSet without a selector would inject into every pod.
    """
    if not pairs:
        raise InjectError(
            "--selector K=V is required (a SidecarSet without one would match every pod)"
        )
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        bad_value = len(value) <= 63 and label_value_problem(value)
        if not sep or qualified_name_problem(key) or bad_value:
            raise InjectError(f"--selector {pair!r}: expected KEY=VALUE with a valid label")
        if len(value) > 63:
            raise InjectError(f"--selector {pair!r}: a label value has at most 63 characters")
        if labels.get(key, value) != value:
            raise InjectError(
                f"--selector {pair!r}: label {key!r} is already selected as {labels[key]!r} "
                "(a pod has one value per label)"
            )
        labels[key] = value
    return labels


def sidecarset(
    name: str,
    selector: Mapping[str, str],
    sidecar: Sidecar,
    options: InjectOptions,
    *,
    namespace: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The SidecarSet and the notes for the user (one sentence each)."""
    if not is_dns1123_subdomain(name):
        raise InjectError(f"--sidecarset {name!r} is not a valid object name")
    if namespace is not None and not is_dns1123_label(namespace):
        raise InjectError(
            f"--namespace {namespace!r} is not a valid namespace name (a DNS label: a-z, 0-9, "
            "'-', at most 63 characters)"
        )
    label = f"SidecarSet {name}"
    notes: list[str] = []
    mounts = [{"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [
        {"name": CONFIG_VOLUME, "configMap": {"name": options.config_map}}
    ]
    for shared in sidecar.requirements.shared_volumes:
        mounts.append({"name": shared.name, "mountPath": shared.mount_path})
        volumes.append({"name": shared.name, "emptyDir": {}})
        notes.append(
            f"{label}: mount volume {shared.name!r} at {shared.mount_path} in the game's "
            f"container too (in the workload's pod template, with an emptyDir volume of that "
            "name, which the pod keeps over the SidecarSet's)"
        )
    ports = [{"name": ADMIN_PORT_NAME, "containerPort": options.admin_port, "protocol": "TCP"}]
    ports += [
        {"name": p.name, "containerPort": p.port, "protocol": p.protocol}
        for p in sidecar.requirements.ports
    ]
    security = security_context({}, {}, sidecar, label, [])
    container = sidecar_container(sidecar, options, ports=ports, mounts=mounts, security=security)
    spec: dict[str, Any] = {"selector": {"matchLabels": dict(selector)}}
    if namespace:
        spec["namespace"] = namespace
    if sidecar.start_order == "Before":
        spec["initContainers"] = [container]
    else:
        spec["containers"] = [{**container, "podInjectPolicy": "AfterAppContainer"}]
    spec["volumes"] = volumes
    if sidecar.start_order == "Before":
        # Kruise defaults an empty type to RollingUpdate and its webhook then refuses a native
        # sidecar: it cannot update an init container in place (pkg/webhook/sidecarset/
        # validating/sidecarset_create_update_handler.go, validateSidecarSetSpec).
        spec["updateStrategy"] = {"type": "NotUpdate"}
    notes += _pod_notes(label, sidecar, options)
    document = {"apiVersion": API_VERSION, "kind": "SidecarSet", "metadata": {"name": name}}
    return {**document, "spec": spec}, notes


def _pod_notes(label: str, sidecar: Sidecar, options: InjectOptions) -> list[str]:
    notes: list[str] = []
    if sidecar.requirements.share_process_namespace:
        notes.append(
            f"{label}: a plugin signals the game: set shareProcessNamespace: true in the "
            "workload's pod template (a SidecarSet cannot); the sidecar runs as root with only "
            "the KILL capability"
        )
    if options.service_account:
        notes.append(
            f"{label}: a SidecarSet cannot set the pod's ServiceAccount: run the pods as "
            f"{options.service_account!r} (serviceAccountName in the pod template) or bind the "
            "kidecar Role (deploy/base/rbac.yaml) to theirs"
        )
    return notes
