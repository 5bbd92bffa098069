"""``kidecar rollout`` against the real API server, without sidecars: what it writes, and how
it refuses bad input (exit 2) and requests the cluster's state refuses (exit 1), each with one
clear message and nothing written."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from kidecar_core.cli import main as kidecar_main
from kidecar_core.testing import free_port
from tests.rollout.fleet import Fleet, FleetFiles, rollout_cli
from tests.support.apiserver import TestCluster, write_kubeconfig

pytestmark = pytest.mark.kube

GSS = "gameserverset/game"


@pytest.fixture
def fleet(
    kube_cluster: TestCluster, kube_namespace: str, files: FleetFiles, tmp_path: Path
) -> Fleet:
    """Two pods of GameServerSet ``game`` with its sidecar ConfigMap, and no processes: nothing
    acts on a rollout, so one that starts stays in progress."""
    made = Fleet(kube_cluster, kube_namespace, tmp_path, 2, files, kube_cluster.admin_kubeconfig)
    made.create_objects()
    return made


def document(cluster: TestCluster, namespace: str) -> dict[str, Any] | None:
    with cluster.admin_api_client() as api:
        try:
            found = k8s.CoreV1Api(api).read_namespaced_config_map("kidecar-rollout", namespace)
        except k8s.ApiException as e:
            assert e.status == 404
            return None
    text = (found.data or {}).get("gameserverset.game")
    return json.loads(text) if text else None


def test_start_writes_the_document(fleet: Fleet, files: FleetFiles) -> None:
    url = files.add("v1", "v1")
    code, out, err = fleet.rollout(
        "start", GSS, "--version", "v1", "--url", url, "--max-unavailable", "50%",
        "--when", "always",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert "revision 1, 2 pods, 1 at a time" in out
    stored = document(fleet.cluster, fleet.namespace)
    assert stored is not None
    assert {k: stored[k] for k in ("version", "url", "revision", "slots", "when", "paused")} == {
        "version": "v1", "url": url, "revision": 1, "slots": 1, "when": "always", "paused": False,
    }  # fmt: skip
    assert stored["previous"] is None
    code, out, _ = fleet.rollout("status", GSS)
    assert code == 0
    assert "0/2 at v1, 2 pending" in out and "game-1  -        -      -      no report yet" in out


def test_a_workload_that_does_not_exist(fleet: Fleet, files: FleetFiles) -> None:
    url = files.add("v1", "v1")
    code, out, err = fleet.rollout("start", "gss/nope", "--version", "v1", "--url", url)
    assert code == 1 and out == ""
    assert err == (
        f"kidecar rollout start: error: gameserverset/nope not found in namespace "
        f"{fleet.namespace}\n"
    )
    for verb in ("status", "pause", "resume", "undo"):
        code, _, err = fleet.rollout(verb, "statefulset/nope")
        assert code == 1 and "statefulset/nope not found" in err, (verb, err)
    assert document(fleet.cluster, fleet.namespace) is None


@pytest.mark.parametrize(
    ("workload", "options", "message"),
    [
        ("pod/game", {}, "workload 'pod/game': expected gameserverset/NAME"),
        ("gss/Game_1", {}, "'Game_1' is not a valid object name"),
        (GSS, {"--max-unavailable": "0"}, "--max-unavailable '0': expected a number of pods"),
        (GSS, {"--max-unavailable": "120%"}, "(1%-100%)"),
        (GSS, {"--partition": "-1"}, "--partition must be >= 0"),
        (GSS, {"--version": "banana"}, "version 'banana' is not a version like v1"),
        (GSS, {"--sha256": "abc"}, "sha256 must be 64 hexadecimal characters"),
        (GSS, {"--url": "ftp://files/v1/game.pak"}, "url must be http:// or https://"),
        (GSS, {"--url": "http://elsewhere.example/game.pak"}, "is not under allowedUrlPrefixes"),
        (GSS, {"--url": "{base}/f/v1/"}, "does not name a file"),
    ],
)
def test_bad_input_is_refused_with_exit_2(
    fleet: Fleet, files: FleetFiles, workload: str, options: dict[str, str], message: str
) -> None:
    given = {"--version": "v1", "--url": files.add("v1", "v1"), **options}
    argv = [part.format(base=files.base) for item in given.items() for part in item]
    code, out, err = fleet.rollout("start", workload, *argv)
    assert (code, out) == (2, ""), err
    assert message in err and "Traceback" not in err
    assert err.startswith("kidecar rollout start: error: ")
    assert document(fleet.cluster, fleet.namespace) is None


@pytest.mark.parametrize("namespace", ["play/configmaps", "../.."])
def test_a_namespace_that_is_no_namespace_name(
    kube_cluster: TestCluster, kube_namespace: str, namespace: str
) -> None:
    """It used to become part of the request's path (``the cluster does not serve
    gameserversets``, exit 1)."""
    for verb in ("status", "pause", "resume", "undo"):
        code, out, err = rollout_cli(kube_cluster, namespace, verb, GSS)
        assert (code, out) == (2, ""), err
        assert err == (
            f"kidecar rollout {verb}: error: namespace {namespace!r} is not a namespace name "
            "(RFC 1123 label: lower-case letters, digits and '-', at most 63 characters)\n"
        )


def test_a_config_that_is_not_utf8(fleet: Fleet, files: FleetFiles, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(b"plugins: []\n\xff\xfe")
    url = files.add("v1", "v1")
    code, out, err = fleet.rollout("start", GSS, "--version", "v1", "--url", url, "--config",
                                   str(config))  # fmt: skip
    assert (code, out) == (2, "")
    assert err == f"kidecar rollout start: error: --config {config}: not UTF-8 text (byte 12); " \
        "a config.yaml is UTF-8\n"  # fmt: skip
    assert document(fleet.cluster, fleet.namespace) is None


def test_url_outside_the_allow_list_names_the_config(fleet: Fleet, files: FleetFiles) -> None:
    code, _, err = fleet.rollout(
        "start", GSS, "--version", "v1", "--url", "http://elsewhere.example/v1/game.pak"
    )
    assert code == 2
    assert f"ConfigMap {fleet.namespace}/kidecar-config key config.yaml" in err
    assert "plugins[0] (hot_update): url 'http://elsewhere.example/v1/game.pak' is not under " \
        f"allowedUrlPrefixes ({files.base}/f/)" in err  # fmt: skip


def test_a_second_start_while_one_runs(fleet: Fleet, files: FleetFiles) -> None:
    v1, v2 = files.add("v1", "v1"), files.add("v2", "v2")
    assert fleet.rollout("start", GSS, "--version", "v1", "--url", v1)[0] == 0
    code, _, err = fleet.rollout("start", GSS, "--version", "v2", "--url", v2)
    assert code == 1
    assert "a rollout of gameserverset/game to v1 (revision 1) is in progress: 0/2 pods " in err
    assert document(fleet.cluster, fleet.namespace)["version"] == "v1"  # type: ignore[index]
    # The same version again changes how it rolls (a canary's partition lowered, ...).
    code, out, err = fleet.rollout(
        "start", GSS, "--version", "v1", "--url", v1, "--partition", "1", "--max-unavailable", "2"
    )
    assert (code, err) == (0, "") and "revision 1" in out and "partition 1" in out
    # Paused, it may be replaced; what the fleet ran before stays the one to go back to.
    assert fleet.rollout("pause", GSS)[0] == 0
    code, out, _ = fleet.rollout("start", GSS, "--version", "v2", "--url", v2)
    assert code == 0 and "revision 2" in out
    stored = document(fleet.cluster, fleet.namespace)
    assert stored is not None and stored["previous"] is None and not stored["paused"]


def test_undo_with_nothing_to_undo(fleet: Fleet, files: FleetFiles) -> None:
    code, _, err = fleet.rollout("undo", GSS)
    assert code == 1
    assert err == (
        "kidecar rollout undo: error: nothing to undo: no rollout of gameserverset/game in "
        f"namespace {fleet.namespace}\n"
    )
    assert fleet.rollout("start", GSS, "--version", "v1", "--url", files.add("v1", "v1"))[0] == 0
    code, _, err = fleet.rollout("undo", GSS)
    assert code == 1
    assert "nothing to undo: v1 (revision 1) is the first version kidecar rolled out" in err
    assert document(fleet.cluster, fleet.namespace)["revision"] == 1  # type: ignore[index]


def test_undo_goes_back_to_what_ran_before(fleet: Fleet, files: FleetFiles) -> None:
    """Before its first rollout, the fleet runs what hot_update recorded for the workload."""
    v1, v2 = files.add("v1", "v1"), files.add("v2", "v2")
    record = json.dumps({"version": "v1", "url": v1, "sha256": "ab" * 32})
    fleet.cluster.apply_yaml(
        [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "sidecar-result"},
          "data": {"workload.gameserverset.game": record}}],
        fleet.namespace,
    )  # fmt: skip
    assert fleet.rollout("start", GSS, "--version", "v2", "--url", v2)[0] == 0
    code, out, err = fleet.rollout("undo", GSS, "--when", "always")
    assert (code, err) == (0, "")
    assert out == "rolling gameserverset/game back to v1 (revision 2, 1 at a time, when always)\n"
    stored = document(fleet.cluster, fleet.namespace)
    assert stored is not None
    assert (stored["version"], stored["sha256"], stored["previous"]["version"]) == (
        "v1", "ab" * 32, "v2",
    )  # fmt: skip


def test_pause_and_resume(fleet: Fleet, files: FleetFiles) -> None:
    for verb in ("pause", "resume"):
        code, _, err = fleet.rollout(verb, GSS)
        assert code == 1 and "no rollout of gameserverset/game in namespace " in err
        assert err.rstrip().endswith(f"to {verb}")
    assert fleet.rollout("start", GSS, "--version", "v1", "--url", files.add("v1", "v1"))[0] == 0
    assert fleet.rollout("resume", GSS)[1] == "gameserverset/game: not paused, rolling to v1\n"
    assert fleet.rollout("pause", GSS)[1].startswith("gameserverset/game: paused at revision 1")
    assert "already paused" in fleet.rollout("pause", GSS)[1]
    code, out, _ = fleet.rollout("status", GSS)
    assert "PAUSED: paused with `kidecar rollout pause` at " in out
    assert fleet.rollout("resume", GSS)[1] == "gameserverset/game: resumed, rolling to v1\n"
    stored = document(fleet.cluster, fleet.namespace)
    assert stored is not None and (stored["paused"], stored["attempt"]) == (False, 2)


def test_partition_needs_ordinals(fleet: Fleet, files: FleetFiles) -> None:
    code, _, err = fleet.rollout(
        "start", "deployment/web", "--version", "v1", "--url", files.add("v1", "v1"),
        "--partition", "1",
    )  # fmt: skip
    assert code == 2 and "--partition needs pods with ordinals" in err


def test_a_workload_without_the_sidecar(fleet: Fleet, files: FleetFiles, tmp_path: Path) -> None:
    fleet.cluster.apply_yaml(
        [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
          "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"containers": [{"name": "web", "image": "x"}]}}}}],
        fleet.namespace,
    )  # fmt: skip
    url = files.add("v1", "v1")
    code, _, err = fleet.rollout("start", "deploy/web", "--version", "v1", "--url", url)
    assert code == 1 and "deployment/web has no kidecar sidecar" in err and "--config" in err
    config = tmp_path / "sidecar.yaml"
    config.write_text(fleet.members[0].config)
    code, out, err = fleet.rollout(
        "start", "deploy/web", "--version", "v1", "--url", url, "--config", str(config)
    )
    assert (code, err) == (0, "") and "revision 1, 0 pods" in out
    code, _, err = fleet.rollout(
        "start", "deploy/web", "--version", "v1", "--url", url, "--config", str(tmp_path / "no")
    )
    assert code == 2 and "--config" in err and "No such file" in err


def test_an_unreachable_api_server(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig", server=f"https://127.0.0.1:{free_port()}", user={"token": "x"}
    )

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = kidecar_main(["rollout", "status", GSS, "--kubeconfig", str(kubeconfig)])
    assert code == 1
    assert "unreachable" in err.getvalue() and "Traceback" not in err.getvalue()


def test_rollout_cli_helper_is_the_command(kube_cluster: TestCluster, kube_namespace: str) -> None:
    code, _, err = rollout_cli(kube_cluster, kube_namespace, "status", GSS)
    assert code == 1 and "gameserverset/game not found" in err


def test_the_namespace_comes_from_the_kubeconfig_context(fleet: Fleet, tmp_path: Path) -> None:
    """Like kubectl: ``-n``, else the context's namespace, else ``default``."""
    admin = fleet.cluster.pki
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig",
        server=fleet.cluster.server,
        ca_file=fleet.cluster.ca_file,
        user={"client-certificate": str(admin.admin_cert), "client-key": str(admin.admin_key)},
        namespace=fleet.namespace,
    )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = kidecar_main(["rollout", "status", GSS, "--kubeconfig", str(kubeconfig)])
        missing = kidecar_main(
            ["rollout", "status", GSS, "--kubeconfig", str(kubeconfig), "--context", "nope"]
        )
    assert code == 1 and f"no rollout of gameserverset/game in namespace {fleet.namespace}" in (
        err.getvalue()
    )
    assert missing == 1 and "has no context 'nope'" in err.getvalue()


def test_a_pause_left_by_a_deleted_document_does_not_pause_a_new_one(
    fleet: Fleet, files: FleetFiles
) -> None:
    """``kubectl delete configmap kidecar-rollout`` to start afresh: the new document counts
    from revision 1 again, and the failure pause its predecessor left for revision 1 must not
    pause it (it did, naming a failure of the deleted rollout)."""
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "kidecar-rollout-gameserverset-game-paused",
            "annotations": {
                "rollout.kidecar.io/revision": "1",
                "rollout.kidecar.io/attempt": "1",
                "rollout.kidecar.io/reason": "pod game-1: http_probe state Failed",
                "rollout.kidecar.io/started-at": "2026-01-01T00:00:00Z",
            },
        },
        "spec": {"holderIdentity": "game-1"},
    }
    fleet.cluster.apply_yaml([lease], fleet.namespace)
    out = fleet.rollout("start", GSS, "--version", "v1", "--url", files.add("v1", "v1"))[1]
    assert "revision 1" in out and "PAUSED" not in out
    assert "PAUSED" not in fleet.rollout("status", GSS)[1]


def test_a_pod_failure_pauses_until_resumed(fleet: Fleet, files: FleetFiles) -> None:
    """A failing sidecar pauses with a Lease (it cannot write the rollout): the command reads
    it for status, start and resume."""
    v1, v2 = files.add("v1", "v1"), files.add("v2", "v2")
    assert fleet.rollout("start", GSS, "--version", "v1", "--url", v1)[0] == 0
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "kidecar-rollout-gameserverset-game-paused",
            "annotations": {
                "rollout.kidecar.io/revision": "1",
                "rollout.kidecar.io/attempt": "1",
                "rollout.kidecar.io/reason": "pod game-1: http_probe state Failed",
            },
        },
        "spec": {"holderIdentity": "game-1"},
    }
    fleet.cluster.apply_yaml([lease], fleet.namespace)
    out = fleet.rollout("status", GSS)[1]
    assert "PAUSED: pod game-1: http_probe state Failed" in out
    assert fleet.rollout("resume", GSS)[1] == "gameserverset/game: resumed, rolling to v1\n"
    assert "PAUSED" not in fleet.rollout("status", GSS)[1]
    code, _, err = fleet.rollout("start", GSS, "--version", "v2", "--url", v2)
    assert code == 1 and "is in progress" in err  # resumed: running again
