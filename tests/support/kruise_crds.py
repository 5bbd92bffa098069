"""OpenKruise's own SidecarSet CRD and the checks of Kruise's SidecarSet webhooks, for the tests
of what `kidecar inject --sidecarset` prints.

`locate_kruise_crds(workdir)` runs `hack/kruise-crds.sh`, which generates Kruise's
apps.kruise.io/v1alpha1 CRDs from Kruise's Go types (module `github.com/openkruise/kruise-api`)
with the controller-gen version and options Kruise uses, cached like kube-apiserver; the tests
install its SidecarSet CRD into the `TestCluster`.

That schema is what Kruise installs, and it checks little of a SidecarSet: containers keep any
field (Kruise validates them in its webhook as a Pod's containers), volumes are free-form, and
Kruise's enums are Go constants the CRD does not carry. `webhook_problems(sidecarset)` is the
rest: the checks of Kruise's SidecarSet webhooks that concern what kidecar prints, taken from
Kruise's sources (`apis/apps/defaults/v1alpha1.go` `SetDefaultsSidecarSet`, then
`pkg/webhook/sidecarset/validating/sidecarset_create_update_handler.go`
`validateSidecarSetSpec`). A container's own fields are left to the Pod checks of the tests
(`kubernetes_validate` and a dry-run Pod on the API server), as Kruise's webhook validates them
as a Pod.

This module deliberately does not import pytest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.apiserver import REPO_ROOT, ClusterUnavailableError, run_build_script, tail

BUILD_SCRIPT = REPO_ROOT / "hack" / "kruise-crds.sh"

POD_INJECT_POLICIES = ("BeforeAppContainer", "AfterAppContainer")
SHARE_VOLUME_POLICIES = ("enabled", "disabled")
UPGRADE_TYPES = ("ColdUpgrade", "HotUpgrade")
UPDATE_STRATEGY_TYPES = ("NotUpdate", "RollingUpdate")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class KruiseCrdsUnavailableError(ClusterUnavailableError):
    """Kruise's CRDs could not be generated; the message says why and how to fix it."""


@dataclass(frozen=True)
class KruiseCrds:
    """What `hack/kruise-crds.sh` generated: the CRD directory and the SidecarSet CRD in it."""

    directory: Path
    sidecarset: Path


def locate_kruise_crds(workdir: Path) -> KruiseCrds:
    """Run `hack/kruise-crds.sh` (building controller-gen and generating the CRDs when they are
    not cached) under the test cache's build lock, the one `hack/test-apiserver.sh` runs under,
    and return its paths. Its stderr goes to `workdir/kruise-crds.log`; a failure raises
    `KruiseCrdsUnavailableError` with the end of that log."""
    build_log = workdir / "kruise-crds.log"
    returncode, values = run_build_script(BUILD_SCRIPT, build_log)
    sidecarset = Path(values.get("KRUISE_SIDECARSET_CRD", ""))
    if returncode != 0 or not sidecarset.is_file():
        raise KruiseCrdsUnavailableError(
            f"{BUILD_SCRIPT.relative_to(REPO_ROOT)} failed (exit {returncode}), so there "
            "is no SidecarSet CRD of Kruise's to check `kidecar inject --sidecarset` against. "
            f"Its log ends with:\n{tail(build_log)}\n"
            "How to fix: run `hack/kruise-crds.sh` by hand and fix what it reports. Usually "
            "`go` is not on PATH or the Go module proxy is unreachable (needed once, to build "
            "controller-gen and fetch github.com/openkruise/kruise-api)."
        )
    return KruiseCrds(directory=Path(values["KRUISE_CRDS"]), sidecarset=sidecarset)


def webhook_problems(sidecarset: Mapping[str, Any]) -> list[str]:
    """What Kruise's SidecarSet webhooks would refuse in `sidecarset` (a SidecarSet document,
    ``{"apiVersion": ..., "kind": "SidecarSet", "metadata": ..., "spec": ...}``), one sentence
    each; ``[]`` when it passes.

    Checked after Kruise's defaulting, as its validating webhook sees the object: an empty
    `updateStrategy.type` becomes RollingUpdate, a container's empty `podInjectPolicy`
    BeforeAppContainer, `shareVolumePolicy.type` disabled and `upgradeStrategy.upgradeType`
    ColdUpgrade. Then: a selector with at least one requirement and known operators; known
    `podInjectPolicy`, `shareVolumePolicy.type`, `upgradeType` and `updateStrategy.type`; at least
    one container or init container; and no native sidecar (an init container with
    `restartPolicy: Always`) under a RollingUpdate strategy, which Kruise cannot update in place.
    """
    spec: Mapping[str, Any] = sidecarset.get("spec") or {}
    problems: list[str] = []

    def check(what: str, value: Any, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            problems.append(f"{what} {value!r} is not one of {', '.join(allowed)}")

    selector = spec.get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        problems.append("spec.selector: an empty selector is not valid for a SidecarSet")
    else:
        for requirement in selector.get("matchExpressions") or []:
            check("spec.selector: operator", requirement.get("operator"), SELECTOR_OPERATORS)
    update_type = (spec.get("updateStrategy") or {}).get("type") or "RollingUpdate"
    check("spec.updateStrategy.type", update_type, UPDATE_STRATEGY_TYPES)
    init_containers = spec.get("initContainers") or []
    containers = spec.get("containers") or []
    if not init_containers and not containers:
        problems.append("spec: no initContainer or container defined for the SidecarSet")
    for kind, listed in (("initContainers", init_containers), ("containers", containers)):
        for container in listed:
            where = f"spec.{kind}[{container.get('name')!r}]"
            upgrade = (container.get("upgradeStrategy") or {}).get("upgradeType") or "ColdUpgrade"
            check(f"{where}.upgradeStrategy.upgradeType", upgrade, UPGRADE_TYPES)
            if kind == "initContainers":
                if container.get("restartPolicy") == "Always" and update_type == "RollingUpdate":
                    problems.append(
                        f"{where}: a native sidecar (restartPolicy: Always) needs "
                        "spec.updateStrategy.type NotUpdate (Kruise cannot update an init "
                        "container in place; an empty type defaults to RollingUpdate)"
                    )
                continue
            policy = container.get("podInjectPolicy") or "BeforeAppContainer"
            check(f"{where}.podInjectPolicy", policy, POD_INJECT_POLICIES)
            share = (container.get("shareVolumePolicy") or {}).get("type") or "disabled"
            check(f"{where}.shareVolumePolicy.type", share, SHARE_VOLUME_POLICIES)
    return problems
