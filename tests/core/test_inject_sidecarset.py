"""``kidecar inject --sidecarset NAME --selector K=V``: an OpenKruise SidecarSet with the same
sidecar as ``kidecar inject``, checked offline (its containers and volumes as a Pod's, and the
checks of Kruise's SidecarSet webhooks, ``tests/support/kruise_crds.py``) and against Kruise's own
SidecarSet CRD on the test API server (generated from Kruise's Go types by
``hack/kruise-crds.sh``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes import client as k8s

from kidecar_core._inject.inject import InjectError, InjectOptions, Sidecar, inject
from kidecar_core._inject.sidecarset import parse_selector, sidecarset
from kidecar_core._plugins.podspec import ContainerPort, PodRequirements, SharedVolume
from tests.core.test_inject import InjectCli, inject_cli  # noqa: F401 - the fixture
from tests.support.apiserver import TestCluster
from tests.support.kruise_crds import webhook_problems

OPTIONS = InjectOptions(image="kidecar:test")
FULL = Sidecar(
    PodRequirements(
        ports=(ContainerPort("hot-update", 5000),),
        shared_volumes=(SharedVolume("kidecar-downloads", "/app/downloads"),),
    )
)
SELECTOR = {"game.kruise.io/owner-gss": "game"}


def injected(sidecar: Sidecar) -> dict[str, Any]:
    """The pod spec ``kidecar inject`` makes of a one-container game pod."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "game", "image": "g"}]}}  # fmt: skip
    spec: dict[str, Any] = inject(pod, sidecar, OPTIONS)["spec"]
    return spec


def as_pod(document: dict[str, Any]) -> dict[str, Any]:
    """A Pod made of the SidecarSet's containers and volumes, beside a game container."""
    spec = copy.deepcopy(document["spec"])
    containers = [{"name": "game", "image": "g"}]
    for c in spec.get("containers", []):
        c.pop("podInjectPolicy", None)
        containers.append(c)
    pod_spec: dict[str, Any] = {"containers": containers, "volumes": spec["volumes"]}
    if "initContainers" in spec:
        pod_spec["initContainers"] = spec["initContainers"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec}


@pytest.mark.parametrize("sidecar", [Sidecar(), FULL])
def test_before_is_the_native_sidecar_kidecar_inject_adds(sidecar: Sidecar) -> None:
    document, _ = sidecarset("kidecar", SELECTOR, sidecar, OPTIONS)
    spec = injected(sidecar)
    assert document["apiVersion"] == "apps.kruise.io/v1alpha1"
    assert document["kind"] == "SidecarSet" and document["metadata"] == {"name": "kidecar"}
    assert document["spec"]["selector"] == {"matchLabels": SELECTOR}
    assert document["spec"]["initContainers"] == spec["initContainers"]
    assert "containers" not in document["spec"]
    assert document["spec"]["volumes"] == spec["volumes"]
    # Kruise cannot update a native sidecar in place, and its default strategy would.
    assert document["spec"]["updateStrategy"] == {"type": "NotUpdate"}


def test_after_is_a_container_injected_after_the_game() -> None:
    sidecar = Sidecar(start_order="After")
    document, _ = sidecarset("kidecar", SELECTOR, sidecar, OPTIONS, namespace="games")
    (container,) = document["spec"]["containers"]
    assert container.pop("podInjectPolicy") == "AfterAppContainer"
    assert container == injected(sidecar)["containers"][1]
    assert document["spec"]["namespace"] == "games"
    assert "initContainers" not in document["spec"]
    assert "updateStrategy" not in document["spec"]  # Kruise's default: RollingUpdate


def test_notes_say_what_a_sidecarset_cannot_do() -> None:
    signals = Sidecar(PodRequirements(share_process_namespace=True))
    document, notes = sidecarset("kidecar", SELECTOR, signals, OPTIONS)
    assert document["spec"]["initContainers"][0]["securityContext"]["capabilities"] == {
        "drop": ["ALL"], "add": ["KILL"],
    }  # fmt: skip
    assert any("set shareProcessNamespace: true in the workload's pod template" in n for n in notes)
    assert any("cannot set the pod's ServiceAccount" in n for n in notes)
    _, notes = sidecarset("kidecar", SELECTOR, FULL, InjectOptions("i", service_account=None))
    assert notes == [
        "SidecarSet kidecar: mount volume 'kidecar-downloads' at /app/downloads in the game's "
        "container too (in the workload's pod template, with an emptyDir volume of that name, "
        "which the pod keeps over the SidecarSet's)"
    ]


@pytest.mark.parametrize("sidecar", [Sidecar(), FULL, Sidecar(start_order="After")])
def test_its_containers_and_volumes_are_valid_pod_parts(sidecar: Sidecar) -> None:
    document, _ = sidecarset("kidecar", SELECTOR, sidecar, OPTIONS)
    kubernetes_validate.validate(as_pod(document), "1.34", strict=True)


@pytest.mark.parametrize("sidecar", [Sidecar(), FULL, Sidecar(start_order="After")])
def test_kruises_webhooks_accept_it(sidecar: Sidecar) -> None:
    document, _ = sidecarset("kidecar", SELECTOR, sidecar, OPTIONS, namespace="games")
    assert webhook_problems(document) == []


def _before() -> dict[str, Any]:
    return sidecarset("kidecar", SELECTOR, Sidecar(), OPTIONS)[0]


def _after() -> dict[str, Any]:
    return sidecarset("kidecar", SELECTOR, Sidecar(start_order="After"), OPTIONS)[0]


def _set(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`document` with the dotted `path` (list items by index) set to `value`."""
    *parents, last = path.split(".")
    node: Any = document
    for key in parents:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[last] = value
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_set(_after(), "spec.containers.0.podInjectPolicy", "Sometimes"),
         "spec.containers['kidecar'].podInjectPolicy 'Sometimes' is not one of"),
        (_set(_after(), "spec.containers.0.shareVolumePolicy", {"type": "always"}),
         "spec.containers['kidecar'].shareVolumePolicy.type 'always' is not one of"),
        (_set(_after(), "spec.containers.0.upgradeStrategy", {"upgradeType": "Warm"}),
         "spec.containers['kidecar'].upgradeStrategy.upgradeType 'Warm' is not one of"),
        (_set(_after(), "spec.updateStrategy", {"type": "Sometimes"}),
         "spec.updateStrategy.type 'Sometimes' is not one of"),
        (_set(_before(), "spec.updateStrategy", {}),
         "spec.initContainers['kidecar']: a native sidecar (restartPolicy: Always) needs "
         "spec.updateStrategy.type NotUpdate"),
        (_set(_before(), "spec.updateStrategy", {"type": "RollingUpdate"}),
         "a native sidecar (restartPolicy: Always) needs spec.updateStrategy.type NotUpdate"),
        (_set(_after(), "spec.selector", {}), "spec.selector: an empty selector is not valid"),
        (_set(_after(), "spec.selector.matchExpressions",
              [{"key": "k", "operator": "Equals", "values": ["v"]}]),
         "spec.selector: operator 'Equals' is not one of"),
        (_set(_after(), "spec.containers", []), "no initContainer or container defined"),
    ],
)  # fmt: skip
def test_the_webhook_checks_refuse_what_kruise_refuses(
    document: dict[str, Any], message: str
) -> None:
    """The checks of Kruise's webhooks that its CRD does not carry (its schema accepts all of
    these): each mistake is reported."""
    problems = webhook_problems(document)
    assert len(problems) == 1 and message in problems[0], problems


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([], "--selector K=V is required (a SidecarSet without one would match every pod)"),
        (["novalue"], "--selector 'novalue': expected KEY=VALUE with a valid label"),
        (["a b=c"], "--selector 'a b=c': expected KEY=VALUE with a valid label"),
        (["k=-bad"], "--selector 'k=-bad': expected KEY=VALUE with a valid label"),
        (["k=" + "v" * 64], "a label value has at most 63 characters"),
        (["a=b", "a=c"], "--selector 'a=c': label 'a' is already selected as 'b' (a pod has one "
         "value per label)"),
    ],
)  # fmt: skip
def test_bad_selectors_are_errors(pairs: list[str], message: str) -> None:
    with pytest.raises(InjectError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_selector(pairs)


def test_selectors() -> None:
    assert parse_selector(["app=game", "example.com/tier=", "x=y"]) == {
        "app": "game", "example.com/tier": "", "x": "y",
    }  # fmt: skip


def test_cli_prints_the_sidecarset_and_notes(inject_cli: InjectCli, tmp_path: Path) -> None:  # noqa: F811
    config = tmp_path / "config.yaml"
    config.write_text("plugins:\n  - name: pod_probe\n    config: {}\n")
    code, out, err = inject_cli(
        "--sidecarset", "kidecar", "--selector", "game.kruise.io/owner-gss=game",
        "--selector", "tier=game", "--config", config,
    )  # fmt: skip
    assert code == 0, err
    document = yaml.safe_load(out)
    assert document["spec"]["selector"]["matchLabels"] == {
        "game.kruise.io/owner-gss": "game", "tier": "game",
    }  # fmt: skip
    assert document["spec"]["initContainers"][0]["image"] == "kidecar:test"
    assert "note: SidecarSet kidecar: a SidecarSet cannot set the pod's ServiceAccount" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "kidecar inject: give either -f WORKLOAD or --sidecarset NAME"),
        (["-f", "-", "--sidecarset", "s"], "give either -f WORKLOAD or --sidecarset NAME"),
        (["-f", "-", "--selector", "a=b"], "--selector and --namespace go with --sidecarset"),
        (["--sidecarset", "s"], "--selector K=V is required"),
        (["--sidecarset", "Bad_Name", "--selector", "a=b"], "'Bad_Name' is not a valid object"),
        (["--sidecarset", "s", "--selector", "a=b", "--namespace", "Bad_NS"],
         "kidecar inject: --namespace 'Bad_NS' is not a valid namespace name (a DNS label: a-z, "
         "0-9, '-', at most 63 characters)"),
        (["--sidecarset", "s", "--selector", "a=b", "--namespace", ""],
         "kidecar inject: --namespace '' is not a valid namespace name"),
        (["--sidecarset", "s", "--selector", "a=b", "--service-account", "Bad SA"],
         "kidecar inject: --service-account 'Bad SA' is not a valid ServiceAccount name"),
        (["-f", "-", "--service-account", "Bad SA"],
         "kidecar inject: --service-account 'Bad SA' is not a valid ServiceAccount name"),
        (["--sidecarset", "s", "--selector", "a=b", "--container", "game"],
         "kidecar inject: --container goes with -f"),
    ],
)  # fmt: skip
def test_cli_errors(
    inject_cli: InjectCli,  # noqa: F811
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("plugins: []\n")
    code, out, err = inject_cli(*args, "--config", config)
    assert (code, out) == (2, "")
    assert message in err and "Traceback" not in err


@pytest.mark.kube
def test_the_api_server_has_kruises_own_crd(
    kube_cluster: TestCluster, kruise_sidecarset_crd: Path
) -> None:
    """The SidecarSet CRD the tests below run against is the one controller-gen generated from
    Kruise's Go types, not a fixture of the project's."""
    with kube_cluster.admin_api_client() as api:
        crd = k8s.ApiextensionsV1Api(api).read_custom_resource_definition(
            "sidecarsets.apps.kruise.io"
        )
        installed = api.sanitize_for_serialization(crd)
    generated = yaml.safe_load(kruise_sidecarset_crd.read_text())
    annotation = "controller-gen.kubebuilder.io/version"
    version = generated["metadata"]["annotations"][annotation]
    assert installed["metadata"]["annotations"][annotation] == version
    assert installed["spec"]["versions"] == generated["spec"]["versions"]


@pytest.mark.kube
@pytest.mark.usefixtures("kruise_sidecarset_crd")
@pytest.mark.parametrize("sidecar", [Sidecar(), FULL, Sidecar(start_order="After")])
def test_the_api_server_stores_it_as_printed(kube_cluster: TestCluster, sidecar: Sidecar) -> None:
    """Against Kruise's own SidecarSet CRD: accepted, and nothing is pruned."""
    name = f"kidecar-{sidecar.start_order.lower()}-{len(sidecar.requirements.ports)}"
    document, _ = sidecarset(name, SELECTOR, sidecar, OPTIONS, namespace="games")
    (stored,) = kube_cluster.apply_yaml([document])
    assert stored["spec"] == document["spec"]
    with kube_cluster.admin_api_client() as api:
        k8s.CustomObjectsApi(api).delete_cluster_custom_object(
            "apps.kruise.io", "v1alpha1", "sidecarsets", name
        )


@pytest.mark.kube
@pytest.mark.usefixtures("kruise_sidecarset_crd")
@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("spec.injectionStrategy.revision", {"policy": "Sometimes"}, "policy"),
        ("spec.revisionHistoryLimit", "ten", "revisionHistoryLimit"),
        ("spec.selector.matchLabels", ["game"], "matchLabels"),
    ],
)
def test_kruises_schema_rejects_what_it_types(
    kube_cluster: TestCluster, path: str, value: Any, field: str
) -> None:
    """Kruise's schema is live: a field it types (an enum, an integer, a map) is checked."""
    document = _set(_after(), path, value)
    with kube_cluster.admin_api_client() as api, pytest.raises(k8s.ApiException) as caught:
        k8s.CustomObjectsApi(api).create_cluster_custom_object(
            "apps.kruise.io", "v1alpha1", "sidecarsets", document, dry_run="All"
        )
    assert caught.value.status == 422 and field in str(caught.value.body)


@pytest.mark.kube
@pytest.mark.parametrize("sidecar", [FULL, Sidecar(start_order="After")])
def test_a_pod_with_its_containers_is_accepted(
    kube_cluster: TestCluster, kube_namespace: str, sidecar: Sidecar
) -> None:
    document, _ = sidecarset("kidecar", SELECTOR, sidecar, OPTIONS)
    pod = as_pod(document)
    with kube_cluster.admin_api_client() as api:
        k8s.CoreV1Api(api).create_namespaced_pod(kube_namespace, pod, dry_run="All")
