"""Local mode refuses what the API server refuses, and cleans up after a kill -9.

The same metadata writes go to the local state file and, in the ``kube`` test, to the real
kube-apiserver: both must accept or refuse each one alike. An end-to-end test runs a real
``kidecar run --local-state`` whose probe result is not a valid label value.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from kidecar_core._store import validation
from kidecar_core._store.kube import KubeStore
from kidecar_core._store.local import LocalStore, remove_stale_temporaries
from kidecar_core._store.objects import ObjectRef, PodIdentity
from kidecar_core.errors import InvalidError
from kidecar_core.testing import Sidecar
from tests.reliability.faults import StateGame

WHO = PodIdentity("gs-0", "default")

INVALID: dict[str, dict[str, Any]] = {
    "label value with a space": {"labels": {"example.com/state": "open for players"}},
    "label value with a newline": {"labels": {"example.com/state": "a\nb"}},
    "label value of 64 characters": {"labels": {"example.com/state": "a" * 64}},
    "label value of 70 characters": {"labels": {"example.com/state": "b" * 70}},
    "label value ending in a dash": {"labels": {"example.com/state": "idle-"}},
    "label key with a space": {"labels": {"example.com/my state": "idle"}},
    "label key with an upper-case prefix": {"labels": {"Example.com/state": "idle"}},
    "label key name of 64 characters": {"labels": {"x" * 64: "idle"}},
    "annotation key with an empty prefix": {"annotations": {"/state": "x"}},
    "label value ending in a newline": {"labels": {"example.com/state": "idle\n"}},
    "label key ending in a newline": {"labels": {"example.com/state\n": "idle"}},
    "annotations over 256 KiB in UTF-8 bytes": {"annotations": {"example.com/big": "é" * 131_072}},
    "annotations over 256 KiB": {"annotations": {"example.com/big": "x" * (200 * 1024),
                                                 "example.com/big2": "y" * (60 * 1024)}},
}  # fmt: skip
VALID: dict[str, dict[str, Any]] = {
    "empty label value": {"labels": {"example.com/state": ""}},
    "label value of 63 characters": {"labels": {"example.com/state": "a" * 63}},
    "label value with dots and underscores": {"labels": {"example.com/v": "v1.2_3-rc"}},
    "annotation with spaces and newlines": {"annotations": {"example.com/n": "a b\nc"}},
    "annotation of 200 KB": {"annotations": {"example.com/big": "x" * (200 * 1000)}},
    "annotation key with an upper-case prefix": {"annotations": {"Example.COM/state": "x"}},
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_local_mode_refuses_what_the_api_server_refuses(tmp_path: Path, case: str) -> None:
    async def main() -> None:
        store = LocalStore(tmp_path / "state.json", WHO)
        for ref in (ObjectRef.pod(WHO), ObjectRef.gameserver(WHO)):
            with pytest.raises(InvalidError, match=r"metadata\.(labels|annotations)"):
                await store.patch(ref, {"metadata": INVALID[case]})
        with pytest.raises(InvalidError):
            await store.create(ObjectRef.configmap("default", "cm"), {"metadata": INVALID[case]})
        # Nothing of the refused write reached the file.
        doc = json.loads((tmp_path / "state.json").read_text())
        assert doc["pod"]["metadata"]["labels"] == {} == doc["pod"]["metadata"]["annotations"]
        assert doc["configmaps"] == {}

    asyncio.run(main())


@pytest.mark.parametrize("case", sorted(VALID))
def test_local_mode_accepts_what_the_api_server_accepts(tmp_path: Path, case: str) -> None:
    async def main() -> None:
        store = LocalStore(tmp_path / "state.json", WHO)
        pod = await store.patch(ObjectRef.pod(WHO), {"metadata": VALID[case]})
        for kind, values in VALID[case].items():
            assert pod["metadata"][kind] == values

    asyncio.run(main())


def test_the_error_names_the_field_and_the_rule(tmp_path: Path) -> None:
    async def main() -> None:
        store = LocalStore(tmp_path / "state.json", WHO)
        with pytest.raises(InvalidError) as caught:
            await store.patch(
                ObjectRef.pod(WHO), {"metadata": {"labels": {"example.com/state": "a b"}}}
            )
        message = str(caught.value)
        assert "metadata.labels.example.com/state" in message
        assert "'a b'" in message and "alphanumeric" in message

    asyncio.run(main())


@pytest.mark.kube
def test_the_api_server_agrees_with_local_mode(
    admin_kubeconfig: Path, kube_namespace: str, make_game_server: Any
) -> None:
    """Every case above, sent to the real kube-apiserver: refused (422) or accepted alike."""
    make_game_server("gs-0")
    pod = ObjectRef.pod(PodIdentity("gs-0", kube_namespace))

    async def main() -> None:
        store = KubeStore.from_kubeconfig(str(admin_kubeconfig))
        try:
            for case, metadata in INVALID.items():
                with pytest.raises(InvalidError):
                    await store.patch(pod, {"metadata": metadata})
                    raise AssertionError(f"the API server accepted {case}")
            for metadata in VALID.values():
                await store.patch(pod, {"metadata": metadata})
        finally:
            await store.close()

    asyncio.run(main())


def test_stale_temporary_state_files_are_removed_at_start(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    stale = [tmp_path / f".state.json.{secrets.token_hex(4)}" for _ in range(3)]
    for path in stale:
        path.write_text('{"half": ')
    unrelated = [tmp_path / ".state.json.bak", tmp_path / ".other.json.abcd1234",
                 tmp_path / "state.json.abcd1234"]  # fmt: skip
    for path in unrelated:
        path.write_text("keep me")
    odd = tmp_path / ".state.json.dir12345"
    odd.mkdir()
    os.mkfifo(tmp_path / ".state.json.fifo1234")
    LocalStore(state, WHO)
    assert not any(p.exists() for p in stale)
    assert all(p.read_text() == "keep me" for p in unrelated)
    assert odd.is_dir() and (tmp_path / ".state.json.fifo1234").exists()
    assert json.loads(state.read_text())["pod"]["metadata"]["name"] == "gs-0"
    assert remove_stale_temporaries(state) == []


def test_a_sidecar_killed_while_saving_leaves_nothing_behind(tmp_path: Path) -> None:
    """kill -9 of a real sidecar, with a leftover temporary file: the next start removes it."""
    sidecar = Sidecar(tmp_path / "s", {"plugins": []})
    sidecar.start()
    leftover = sidecar.state_path.parent / f".state.json.{secrets.token_hex(4)}"
    leftover.write_text("{")
    assert sidecar.stop(sig=9) != 0
    again = Sidecar(tmp_path / "s", {"plugins": []})
    again.start()
    try:
        assert not leftover.exists()
        assert "left behind by a kidecar that was killed" in again.log()
    finally:
        assert again.stop() == 0


def test_a_probe_result_that_is_no_label_value_is_refused_end_to_end(tmp_path: Path) -> None:
    """A real sidecar probes a real game whose state is ``open for players``: the label write is
    refused as the API server would, the annotation of the same result still lands."""
    game = StateGame(tmp_path, "open for players").start()
    config = {
        "plugins": [
            {
                "name": "http_probe",
                "config": {
                    "probeIntervalSeconds": 0.2,
                    "endpoints": [
                        {
                            "url": game.url,
                            "jsonPathConfig": {"jsonPath": "data.state"},
                            "storageConfig": {
                                "type": "InKube",
                                "inKube": {
                                    "annotationKey": "example.com/state",
                                    "labelKey": "example.com/state",
                                },
                            },
                        }
                    ],
                },
            }
        ]
    }
    sidecar = Sidecar(tmp_path / "s", config)
    try:
        sidecar.start()
        sidecar.wait_for(
            lambda: (
                sidecar.state()["pod"]["metadata"]["annotations"].get("example.com/state")
                == "open for players"
            ),
            20,
            "the annotation",
        )
        sidecar.wait_for(lambda: "a label value must be" in sidecar.log(), 20, "the refusal")
        assert "example.com/state" not in sidecar.state()["pod"]["metadata"]["labels"]
        assert "Traceback" not in sidecar.log()
    finally:
        sidecar.stop()
        game.stop()


def test_validation_rules_match_the_api_servers_limits() -> None:
    assert validation.label_value_problem("a" * 63) is None
    assert validation.label_value_problem("a" * 64) is not None
    assert validation.qualified_name_problem("a.b/" + "c" * 63) is None
    assert validation.qualified_name_problem("a" * 254 + "/c") is not None
    assert validation.is_dns1123_subdomain("sidecar-result.v1")
    assert not validation.is_dns1123_subdomain("a..b")
    assert not validation.is_dns1123_subdomain("-a")
    assert validation.is_dns1123_label("a" * 63) and not validation.is_dns1123_label("a" * 64)
    limit = validation.TOTAL_ANNOTATION_SIZE_LIMIT
    assert validation.annotations_size_problem({"k": "x" * (limit - 1)}) is None
    assert validation.annotations_size_problem({"k": "x" * limit}) is not None
