"""``kidecar inject``: golden files, idempotency, every workload kind, Before vs After, errors.

Golden files: each directory of ``tests/core/golden/inject/`` holds ``workload.yaml``,
``config.yaml`` (a config, or a ConfigMap manifest holding one), optionally ``args`` (extra
command-line arguments) and the expected ``expected.yaml`` (standard output) and
``expected.stderr``.  After an intended change of the output, regenerate them and review the diff::

    KIDECAR_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/core/test_inject.py -k golden

The expected outputs are also applied with ``kubectl apply --dry-run=server`` by
``tests/kube/test_manifests.py``.
"""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kidecar_core import __version__, cli
from kidecar_core._config.loader import Resources
from kidecar_core._inject.inject import (
    InjectError,
    InjectOptions,
    Sidecar,
    dump_documents,
    inject,
    inject_documents,
    leading_comment,
    merge_requirements,
)
from kidecar_core._plugins.podspec import ContainerPort, PodRequirements, SharedVolume

GOLDEN = Path(__file__).resolve().parent / "golden" / "inject"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "workload.yaml").is_file())
IMAGE = "kidecar:test"
OPTIONS = InjectOptions(image=IMAGE)
SIGNALS = Sidecar(PodRequirements(share_process_namespace=True))

InjectCli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def inject_cli(
    testplugins_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[InjectCli]:
    """``kidecar inject ARGS`` in this process, with the test plugins' entry points visible
    (their private site directory on ``sys.path`` for the test only); returns (exit, out, err)."""
    site = testplugins_env["PYTHONPATH"].split(os.pathsep)[0]
    monkeypatch.syspath_prepend(site)
    for var in (
        "KIDECAR_PLUGINS",
        "KIDECAR_DISABLE_PLUGINS",
        "KIDECAR_PLUGIN_FILES",
        "KIDECAR_IMAGE",
    ):
        monkeypatch.delenv(var, raising=False)

    def run(*args: str | Path, stdin: str = "", image: str | None = IMAGE) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        # --image first, so that a test's own --image wins.
        argv = ["inject", *(["--image", image] if image is not None else [])]
        argv += [str(a) for a in args]
        code = cli.main(argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run


def case_args(case: str) -> list[str]:
    d = GOLDEN / case
    extra = shlex.split((d / "args").read_text()) if (d / "args").is_file() else []
    return ["-f", str(d / "workload.yaml"), "--config", str(d / "config.yaml"), *extra]


def pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": list(containers or [{"name": "game", "image": "g"}]), **spec},
    }


def names(containers: list[dict[str, Any]] | None) -> list[str]:
    return [c["name"] for c in containers or []]


def sidecar_of(spec: dict[str, Any]) -> dict[str, Any]:
    found = [
        c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == "kidecar"
    ]
    assert len(found) == 1
    return found[0]


# -- golden files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, inject_cli: InjectCli) -> None:
    code, out, err = inject_cli(*case_args(case))
    assert code == 0, err
    expected, expected_err = GOLDEN / case / "expected.yaml", GOLDEN / case / "expected.stderr"
    if os.environ.get("KIDECAR_REGEN_GOLDEN") == "1":
        expected.write_text(out)
        expected_err.write_text(err)
    assert out == expected.read_text()
    assert err == expected_err.read_text()


@pytest.mark.parametrize("case", CASES)
def test_golden_output_is_a_fixed_point(case: str, inject_cli: InjectCli) -> None:
    """Injecting the injected output again changes nothing."""
    expected = (GOLDEN / case / "expected.yaml").read_text()
    args = case_args(case)
    args[1] = "-"
    code, out, err = inject_cli(*args, stdin=expected)
    assert code == 0, err
    assert out == expected


# -- kinds ----------------------------------------------------------------------------------------

TEMPLATE: dict[str, Any] = {"spec": {"containers": [{"name": "game", "image": "g"}]}}
KINDS = {
    "Pod": ("v1", {"spec": TEMPLATE["spec"]}, ("spec",)),
    "Deployment": ("apps/v1", {"spec": {"template": TEMPLATE}}, ("spec", "template", "spec")),
    "StatefulSet": ("apps/v1", {"spec": {"template": TEMPLATE}}, ("spec", "template", "spec")),
    "ReplicaSet": ("apps/v1", {"spec": {"template": TEMPLATE}}, ("spec", "template", "spec")),
    "DaemonSet": ("apps/v1", {"spec": {"template": TEMPLATE}}, ("spec", "template", "spec")),
    "Job": ("batch/v1", {"spec": {"template": TEMPLATE}}, ("spec", "template", "spec")),
    "CronJob": (
        "batch/v1",
        {"spec": {"jobTemplate": {"spec": {"template": TEMPLATE}}}},
        ("spec", "jobTemplate", "spec", "template", "spec"),
    ),
    "GameServerSet": (
        "game.kruise.io/v1alpha1",
        {"spec": {"replicas": 1, "gameServerTemplate": TEMPLATE}},
        ("spec", "gameServerTemplate", "spec"),
    ),
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_gets_the_sidecar_in_its_pod_spec(kind: str) -> None:
    api_version, body, path = KINDS[kind]
    doc = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "w"}, **body}
    before = yaml.safe_dump(doc)
    out = inject(doc, Sidecar(), OPTIONS)
    assert yaml.safe_dump(doc) == before, "the input must not be changed"
    spec = out
    for key in path:
        spec = spec[key]
    assert names(spec["initContainers"]) == ["kidecar"]
    assert names(spec["containers"]) == ["game"]
    assert {"name": "kidecar-config", "configMap": {"name": "kidecar-config"}} in spec["volumes"]


def test_podless_kinds_pass_through_and_empty_documents_are_dropped() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {}}
    docs, notes = inject_documents([None, service, pod(), None], Sidecar(), OPTIONS)
    assert docs[0] == service
    assert names(docs[1]["spec"]["initContainers"]) == ["kidecar"]
    assert len(docs) == 2 and notes == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
            "document 2: cannot inject into kind Widget (example.com/v1)",
        ),
        (
            {"apiVersion": "apps.kruise.io/v1alpha1", "kind": "GameServerSet"},
            "document 2: cannot inject into kind GameServerSet (apps.kruise.io/v1alpha1)",
        ),
        (["not", "an", "object"], "document 2 is not a Kubernetes object"),
        ({"metadata": {"name": "x"}}, "document 2 has no kind and apiVersion"),
        (
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {}},
            "document 2 (Deployment d): no pod spec at spec.template.spec",
        ),
        (
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
            "document 2 (Pod p): the pod spec has no list of containers",
        ),
        (
            {"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Node"}]},
            "document 2, item 1: cannot inject into kind Node",
        ),
    ],
)
def test_unsupported_documents_are_errors_naming_the_document(doc: Any, message: str) -> None:
    with pytest.raises(InjectError, match=message.replace("(", r"\(").replace(")", r"\)")):
        inject_documents([pod(), doc], Sidecar(), OPTIONS)


# -- Before / After, idempotency ------------------------------------------------------------


def test_before_is_a_native_sidecar_first_among_the_init_containers() -> None:
    doc = pod(initContainers=[{"name": "setup", "image": "s"}])
    spec = inject(doc, Sidecar(start_order="Before"), OPTIONS)["spec"]
    assert names(spec["initContainers"]) == ["kidecar", "setup"]
    sidecar = spec["initContainers"][0]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "kidecar-admin"}


def test_after_is_a_regular_container_after_the_game() -> None:
    spec = inject(pod(), Sidecar(start_order="After"), OPTIONS)["spec"]
    assert names(spec["containers"]) == ["game", "kidecar"]
    assert "initContainers" not in spec
    assert "restartPolicy" not in spec["containers"][1]
    assert "startupProbe" not in spec["containers"][1]


def test_changing_the_start_order_moves_the_sidecar() -> None:
    before = inject(pod(), Sidecar(start_order="Before"), OPTIONS)
    after = inject(before, Sidecar(start_order="After"), OPTIONS)
    assert "initContainers" not in after["spec"]
    assert names(after["spec"]["containers"]) == ["game", "kidecar"]
    assert inject(after, Sidecar(start_order="Before"), OPTIONS) == before


def test_a_new_init_containers_list_goes_before_the_containers() -> None:
    spec = inject(pod(), Sidecar(), OPTIONS)["spec"]
    assert list(spec).index("initContainers") == list(spec).index("containers") - 1


def test_null_lists_are_filled() -> None:
    spec = inject(pod(initContainers=None, volumes=None), FULL, OPTIONS)["spec"]
    assert names(spec["initContainers"]) == ["kidecar"]
    assert [v["name"] for v in spec["volumes"]] == ["kidecar-config", "kidecar-downloads"]


FULL = Sidecar(
    PodRequirements(
        ports=(ContainerPort("hot-update", 5000),),
        shared_volumes=(SharedVolume("kidecar-downloads", "/app/downloads"),),
        share_process_namespace=True,
    ),
    Resources(cpu="100m", memory="128Mi"),
)


@pytest.mark.parametrize("sidecar", [Sidecar(), FULL, Sidecar(start_order="After")])
@pytest.mark.parametrize(
    "options", [OPTIONS, InjectOptions(image="x:1", config_map="c", admin_port=9999)]
)
def test_injecting_twice_equals_injecting_once(sidecar: Sidecar, options: InjectOptions) -> None:
    once = inject(pod(), sidecar, options)
    assert inject(once, sidecar, options) == once


def test_a_second_run_updates_the_sidecar_in_place() -> None:
    once = inject(pod({"name": "game", "image": "g"}, {"name": "log", "image": "l"}), FULL, OPTIONS)
    again = inject(once, Sidecar(), InjectOptions(image="kidecar:2", config_map="other"))
    sidecar = sidecar_of(again["spec"])
    assert sidecar["image"] == "kidecar:2"
    assert [p["name"] for p in sidecar["ports"]] == ["kidecar-admin"]
    assert "resources" not in sidecar
    assert {"name": "kidecar-config", "configMap": {"name": "other"}} in again["spec"]["volumes"]
    assert len([v for v in again["spec"]["volumes"] if v["name"] == "kidecar-config"]) == 1


# -- the container ---------------------------------------------------------------------------------


def test_the_sidecar_container() -> None:
    spec = inject(pod(), FULL, OPTIONS)["spec"]
    sidecar = sidecar_of(spec)
    assert sidecar["image"] == IMAGE
    assert sidecar["command"] == ["kidecar", "run"]
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["KIDECAR_CONFIG"]["value"] == "/opt/sidecar/config.yaml"
    assert env["KIDECAR_ADMIN_LISTEN"]["value"] == ":9090"
    assert sidecar["ports"] == [
        {"name": "kidecar-admin", "containerPort": 9090, "protocol": "TCP"},
        {"name": "hot-update", "containerPort": 5000, "protocol": "TCP"},
    ]
    limits = {"cpu": "100m", "memory": "128Mi"}
    assert sidecar["resources"] == {"requests": limits, "limits": limits}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "kidecar-admin"}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "kidecar-admin"}
    assert sidecar["volumeMounts"] == [
        {"name": "kidecar-config", "mountPath": "/opt/sidecar", "readOnly": True},
        {"name": "kidecar-downloads", "mountPath": "/app/downloads"},
    ]
    game = spec["containers"][0]
    assert game["volumeMounts"] == [{"name": "kidecar-downloads", "mountPath": "/app/downloads"}]
    assert {"name": "kidecar-downloads", "emptyDir": {}} in spec["volumes"]
    assert spec["shareProcessNamespace"] is True
    assert spec["serviceAccountName"] == "kidecar"


def test_resources_only_for_what_the_config_sets() -> None:
    sidecar = sidecar_of(
        inject(pod(), Sidecar(resources=Resources(memory="64Mi")), OPTIONS)["spec"]
    )
    assert sidecar["resources"] == {"requests": {"memory": "64Mi"}, "limits": {"memory": "64Mi"}}
    assert "resources" not in sidecar_of(inject(pod(), Sidecar(), OPTIONS)["spec"])


def test_without_signals_the_sidecar_is_locked_down() -> None:
    spec = inject(pod(), Sidecar(), OPTIONS)["spec"]
    assert "shareProcessNamespace" not in spec
    assert sidecar_of(spec)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


@pytest.mark.parametrize("level", ["container", "pod"])
def test_a_signalling_sidecar_runs_as_the_games_user(level: str) -> None:
    user = {"runAsUser": 1000, "runAsGroup": 2000}
    doc = (
        pod({"name": "game", "image": "g", "securityContext": user})
        if level == "container"
        else pod(securityContext=user)
    )
    docs, notes = inject_documents([doc], SIGNALS, OPTIONS)
    context = sidecar_of(docs[0]["spec"])["securityContext"]
    assert context["runAsUser"] == 1000 and context["runAsGroup"] == 2000
    assert context["runAsNonRoot"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert notes == []


@pytest.mark.parametrize("uid", [None, 0])
def test_a_signalling_sidecar_for_a_root_game_is_root_with_only_cap_kill(uid: int | None) -> None:
    game: dict[str, Any] = {"name": "game", "image": "g"}
    if uid is not None:
        game["securityContext"] = {"runAsUser": uid}
    docs, notes = inject_documents([pod(game)], SIGNALS, OPTIONS)
    context = sidecar_of(docs[0]["spec"])["securityContext"]
    assert context["runAsUser"] == 0 and context["runAsNonRoot"] is False
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["KILL"]}
    assert context["readOnlyRootFilesystem"] is True
    assert len(notes) == 1 and "document 1 (Pod p)" in notes[0] and "KILL" in notes[0]


def test_a_signalling_sidecar_for_a_nonroot_game_of_unknown_user_is_an_error() -> None:
    with pytest.raises(InjectError, match=r"set securityContext\.runAsUser on container 'game'"):
        inject(pod(securityContext={"runAsNonRoot": True}), SIGNALS, OPTIONS)


def test_the_shared_volume_is_the_one_the_game_already_mounts_there() -> None:
    game = {
        "name": "game",
        "image": "g",
        "volumeMounts": [{"name": "files", "mountPath": "/app/downloads/"}],
    }
    doc = pod(game, volumes=[{"name": "files", "persistentVolumeClaim": {"claimName": "c"}}])
    spec = inject(doc, FULL, OPTIONS)["spec"]
    assert {"name": "files", "mountPath": "/app/downloads"} in sidecar_of(spec)["volumeMounts"]
    assert [v["name"] for v in spec["volumes"]] == ["files", "kidecar-config"]
    assert spec["containers"][0]["volumeMounts"] == game["volumeMounts"]


def test_a_predefined_volume_of_that_name_is_kept() -> None:
    volume = {"name": "kidecar-downloads", "emptyDir": {"sizeLimit": "1Gi"}}
    spec = inject(pod(volumes=[volume]), FULL, OPTIONS)["spec"]
    assert spec["volumes"][0] == volume


def test_the_main_container_is_chosen_by_name() -> None:
    doc = pod({"name": "log", "image": "l"}, {"name": "game", "image": "g"})
    spec = inject(doc, FULL, InjectOptions(image=IMAGE, container="game"))["spec"]
    assert "volumeMounts" not in spec["containers"][0]
    assert spec["containers"][1]["volumeMounts"][0]["mountPath"] == "/app/downloads"
    with pytest.raises(
        InjectError, match=r"no container named 'gmae' \(containers: 'log', 'game'\)"
    ):
        inject(doc, FULL, InjectOptions(image=IMAGE, container="gmae"))


def test_service_account() -> None:
    assert (
        inject(pod(serviceAccountName="default"), Sidecar(), OPTIONS)["spec"]["serviceAccountName"]
        == "kidecar"
    )
    docs, notes = inject_documents([pod(serviceAccountName="game")], Sidecar(), OPTIONS)
    assert docs[0]["spec"]["serviceAccountName"] == "game"
    assert "bind the kidecar Role" in notes[0]
    untouched = inject(pod(), Sidecar(), InjectOptions(image=IMAGE, service_account=None))
    assert "serviceAccountName" not in untouched["spec"]


# -- ports and requirements -----------------------------------------------------------------------


def test_a_port_taken_by_the_game_is_an_error() -> None:
    game = {"name": "game", "image": "g", "ports": [{"containerPort": 9090}]}
    with pytest.raises(
        InjectError,
        match=r"9090/TCP \(kidecar-admin\) is already used by container 'game' "
        r"\(choose another with --admin-port\)",
    ):
        inject(pod(game), Sidecar(), OPTIONS)
    inject(pod(game), Sidecar(), InjectOptions(image=IMAGE, admin_port=9191))
    udp = {"name": "game", "image": "g", "ports": [{"containerPort": 9090, "protocol": "UDP"}]}
    inject(pod(udp), Sidecar(), OPTIONS)  # another protocol: no conflict
    clash = Sidecar(PodRequirements(ports=(ContainerPort("api", 9090),)))
    with pytest.raises(
        InjectError,
        match="port 9090/TCP \\(api\\) is already used by the sidecar's port 'kidecar-admin'",
    ):
        inject(pod(), clash, OPTIONS)


def test_merge_requirements() -> None:
    a = PodRequirements(ports=(ContainerPort("a", 1),), shared_volumes=(SharedVolume("v", "/x"),))
    b = PodRequirements(
        ports=(ContainerPort("a", 1), ContainerPort("b", 2)), share_process_namespace=True
    )
    merged = merge_requirements([("plugins[0] (a)", a), ("plugins[1] (b)", b)])
    assert merged == PodRequirements(
        ports=(ContainerPort("a", 1), ContainerPort("b", 2)),
        shared_volumes=(SharedVolume("v", "/x"),),
        share_process_namespace=True,
    )
    assert merge_requirements([]) == PodRequirements()


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (
            PodRequirements(ports=(ContainerPort("a", 2),)),
            "plugins\\[1\\] \\(b\\) asks for .*port=2.* but plugins\\[0\\] \\(a\\) for .*port=1",
        ),
        (
            PodRequirements(ports=(ContainerPort("z", 1),)),
            "asks for .*'z'.* but plugins\\[0\\] \\(a\\) for .*'a'",
        ),
        (
            PodRequirements(shared_volumes=(SharedVolume("v", "/y"),)),
            "asks for .*'/y'.* but .* for .*'/x'",
        ),
        (
            PodRequirements(shared_volumes=(SharedVolume("w", "/x/"),)),
            "asks for .*'w'.* but .* for .*'v'",
        ),
        (
            PodRequirements(ports=(ContainerPort("Hot_Update", 3),)),
            "port name 'Hot_Update' is invalid",
        ),
        (
            PodRequirements(ports=(ContainerPort("much-too-long-name", 3),)),
            "port name .* is invalid",
        ),
        (
            PodRequirements(ports=(ContainerPort("ok", 70000),)),
            "port 70000 \\(ok\\) is not in 1-65535",
        ),
        (PodRequirements(ports=(ContainerPort("ok", 3, "QUIC"),)), "protocol 'QUIC'"),
        (
            PodRequirements(shared_volumes=(SharedVolume("Bad_Name", "/y"),)),
            "volume name 'Bad_Name'",
        ),
        (
            PodRequirements(shared_volumes=(SharedVolume("ok", "rel"),)),
            "mount path 'rel' is not absolute",
        ),
        (
            PodRequirements(shared_volumes=(SharedVolume("kidecar-config", "/data"),)),
            "volume name 'kidecar-config' is the sidecar's config volume; choose another",
        ),
        (
            PodRequirements(shared_volumes=(SharedVolume("data", "/opt/sidecar/"),)),
            "mount path '/opt/sidecar/' would hide the sidecar's config at /opt/sidecar",
        ),
        (
            PodRequirements(shared_volumes=(SharedVolume("data", "/opt/x/../sidecar/y"),)),
            "mount path '/opt/x/../sidecar/y' would hide the sidecar's config at /opt/sidecar",
        ),
        (
            PodRequirements(shared_volumes=(SharedVolume("data", "/"),)),
            "mount path '/' would hide the sidecar's root",
        ),
    ],
)
def test_conflicting_or_invalid_requirements_are_errors(
    second: PodRequirements, message: str
) -> None:
    first = PodRequirements(
        ports=(ContainerPort("a", 1),), shared_volumes=(SharedVolume("v", "/x"),)
    )
    with pytest.raises(InjectError, match=message):
        merge_requirements([("plugins[0] (a)", first), ("plugins[1] (b)", second)])


# -- output ----------------------------------------------------------------------------------


def test_dump_keeps_key_order_uses_blocks_and_no_aliases() -> None:
    shared = {"cpu": "1"}
    text = dump_documents(
        [{"z": 1, "a": {"r": shared, "l": shared}}, {"data": {"config.yaml": "a: 1\nb: 2\n"}}]
    )
    assert text.index("z:") < text.index("a:")
    assert "&" not in text and "*id" not in text
    assert "config.yaml: |\n    a: 1\n    b: 2\n" in text
    assert text.count("\n---\n") == 1
    assert list(yaml.safe_load_all(text))[1]["data"]["config.yaml"] == "a: 1\nb: 2\n"


def test_the_comments_opening_a_file_are_kept() -> None:
    text = "# header\n#\n# more\napiVersion: v1  # lost\n# lost too\nkind: Pod\n"
    assert leading_comment(text) == "# header\n#\n# more\n"
    assert leading_comment("kind: Pod\n# not a header\n") == ""


# -- the command line -----------------------------------------------------------------------------


def test_cli_reads_stdin_and_takes_the_config_from_a_configmap(
    inject_cli: InjectCli, tmp_path: Path
) -> None:
    config = tmp_path / "cm.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "game-sidecar"},
                "data": {"config.yaml": "plugins: []\nsidecarstartorder: After\n"},
            }
        )
    )
    code, out, err = inject_cli("-f", "-", "--config", config, stdin=yaml.safe_dump(pod()))
    assert code == 0, err
    spec = yaml.safe_load(out)["spec"]
    assert names(spec["containers"]) == ["game", "kidecar"]
    assert {"name": "kidecar-config", "configMap": {"name": "game-sidecar"}} in spec["volumes"]
    code, out, err = inject_cli(
        "-f", "-", "--config", config, "--config-map", "mine", stdin=yaml.safe_dump(pod())
    )
    assert {"name": "kidecar-config", "configMap": {"name": "mine"}} in yaml.safe_load(out)["spec"][
        "volumes"
    ]


def test_cli_default_image(
    inject_cli: InjectCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("plugins: []\n")
    code, out, err = inject_cli(
        "-f", "-", "--config", config, stdin=yaml.safe_dump(pod()), image=None
    )
    assert code == 0, err
    assert sidecar_of(yaml.safe_load(out)["spec"])["image"] == f"kidecar:{__version__}"
    monkeypatch.setenv("KIDECAR_IMAGE", "registry.example.com/kidecar:9")
    _, out, _ = inject_cli("-f", "-", "--config", config, stdin=yaml.safe_dump(pod()), image=None)
    assert sidecar_of(yaml.safe_load(out)["spec"])["image"] == "registry.example.com/kidecar:9"


@pytest.mark.parametrize(
    ("workload", "extra", "message"),
    [
        (
            "kind: Widget\napiVersion: x/v1\n",
            [],
            "kidecar inject: <stdin>: document 1: cannot inject into kind Widget",
        ),
        ("a: [\n", [], "kidecar inject: <stdin>: <stdin> is not valid YAML (line 2, column 1)"),
        ("", [], "kidecar inject: <stdin>: no Kubernetes objects in it"),
        ("{}", ["--admin-port", "0"], "--admin-port 0 is not in 1-65535"),
        (
            "{}",
            ["--config-map", "Not_Valid"],
            "--config-map 'Not_Valid' is not a valid ConfigMap name",
        ),
        ("{}", ["--image", " "], "--image must not be empty"),
    ],
)
def test_cli_errors_exit_2_with_a_message(
    inject_cli: InjectCli, tmp_path: Path, workload: str, extra: list[str], message: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("plugins: []\n")
    code, out, err = inject_cli("-f", "-", "--config", config, *extra, stdin=workload)
    assert (code, out) == (2, "")
    assert message in err
    assert "Traceback" not in err


def test_cli_configmap_without_the_config(inject_cli: InjectCli, tmp_path: Path) -> None:
    config = tmp_path / "cm.yaml"
    config.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {other: x}\n")
    code, out, err = inject_cli("-f", "-", "--config", config, stdin=yaml.safe_dump(pod()))
    assert (code, out) == (2, "")
    assert err == (
        "kidecar: invalid configuration (1 problem):\n"
        "  data: ConfigMap cm has no data key 'config.yaml' (the sidecar config)\n"
    )


def test_cli_missing_workload_file(inject_cli: InjectCli, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("plugins: []\n")
    code, _, err = inject_cli("-f", tmp_path / "nope.yaml", "--config", config)
    assert code == 2
    assert f"{tmp_path / 'nope.yaml'}: cannot read it: No such file or directory" in err


def test_cli_invalid_config_is_reported_with_paths(inject_cli: InjectCli, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "plugins:\n  - name: tp_needs\n    config: {port: x, sharedDri: /a}\n"
        "sidecarstartorder: Later\n"
    )
    code, out, err = inject_cli("-f", "-", "--config", config, stdin=yaml.safe_dump(pod()))
    assert (code, out) == (2, "")
    assert "plugins[0].config.port" in err
    assert "plugins[0].config.sharedDri" in err and "did you mean 'sharedDir'" in err
    assert "sidecarstartorder" in err


def test_cli_conflicting_requirements_are_an_error(inject_cli: InjectCli, tmp_path: Path) -> None:
    override = tmp_path / "override.py"
    override.write_text(
        "from kidecar_core import hookimpl\n"
        "from kidecar_core._plugins.podspec import ContainerPort, PodRequirements\n\n\n"
        "@hookimpl\ndef kidecar_pod_requirements(name, config):\n"
        "    return PodRequirements(ports=(ContainerPort('tp-needs', 5001),))\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text("plugins:\n  - {name: tp_needs, config: {port: 5000}}\n")
    code, out, err = inject_cli(
        "-f", "-", "--config", config, "--plugin-file", override, stdin=yaml.safe_dump(pod())
    )
    assert (code, out) == (2, "")
    assert "plugins[0] (tp_needs) asks for ContainerPort(name='tp-needs', port=5001" in err
    assert "but plugins[0] (tp_needs) for ContainerPort(name='tp-needs', port=5000" in err


def test_cli_a_plugin_answering_garbage_is_named(inject_cli: InjectCli, tmp_path: Path) -> None:
    override = tmp_path / "override.py"
    override.write_text(
        "from kidecar_core import hookimpl\n\n\n"
        "@hookimpl\ndef kidecar_pod_requirements(name, config):\n    return {'ports': [5000]}\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text("plugins:\n  - {name: tp_needs, config: {}}\n")
    code, _, err = inject_cli(
        "-f", "-", "--config", config, "--plugin-file", override, stdin=yaml.safe_dump(pod())
    )
    assert code == 2
    assert (
        "plugin 'tp_needs' (plugins[0]) answered kidecar_pod_requirements with {'ports': [5000]}"
        in err
    )


def test_cli_a_local_override_can_answer_for_a_plugin(
    inject_cli: InjectCli, tmp_path: Path
) -> None:
    """Like a conftest.py: a --plugin-file adds requirements to a configured plugin's."""
    override = tmp_path / "override.py"
    override.write_text(
        "from kidecar_core import hookimpl\n"
        "from kidecar_core._plugins.podspec import ContainerPort, PodRequirements\n\n\n"
        "@hookimpl\ndef kidecar_pod_requirements(name, config):\n"
        "    return PodRequirements(ports=(ContainerPort('extra', 6000),))\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text("plugins:\n  - {name: tp_needs, config: {port: 5000}}\n")
    code, out, err = inject_cli(
        "-f", "-", "--config", config, "--plugin-file", override, stdin=yaml.safe_dump(pod())
    )
    assert code == 0, err
    ports = sidecar_of(yaml.safe_load(out)["spec"])["ports"]
    assert [p["containerPort"] for p in ports] == [9090, 5000, 6000]


def test_the_real_command_reads_stdin(testplugins_env: dict[str, str], tmp_path: Path) -> None:
    """The installed console script, end to end, as a user runs it in a pipe."""
    config = tmp_path / "config.yaml"
    config.write_text("plugins:\n  - {name: tp_needs, config: {port: 5000, signals: true}}\n")
    kidecar = Path(sys.executable).parent / "kidecar"
    result = subprocess.run(
        [str(kidecar), "inject", "-f", "-", "--config", str(config)],
        input=yaml.safe_dump(pod()),
        capture_output=True,
        text=True,
        env=testplugins_env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    spec = yaml.safe_load(result.stdout)["spec"]
    assert spec["shareProcessNamespace"] is True
    assert sidecar_of(spec)["ports"][1]["containerPort"] == 5000
    assert "runs as root with only the KILL capability" in result.stderr
