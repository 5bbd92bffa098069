"""game_api's pure rules: label/annotation names, GameServer fields, coalescing, config."""

from __future__ import annotations

import asyncio
import importlib.resources
import itertools
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from kidecar_core import ManualClock, ObjectRef, Write
from kidecar_core.errors import ConfigError
from kidecar_core.testing import free_port, load_config
from kidecar_plugins.game_api.batch import Batcher, BatcherClosed
from kidecar_plugins.game_api.client import GameApiClient, GameApiUnreachable
from kidecar_plugins.game_api.config import GameApiConfig
from kidecar_plugins.game_api.errors import ApiError
from kidecar_plugins.game_api.gameserver import check_priority, parse_spec_patch, view
from kidecar_plugins.game_api.writes import field_manager

GS = ObjectRef("game.kruise.io", "v1alpha1", "gameservers", "default", "gs-0")
POD = ObjectRef("", "v1", "pods", "default", "gs-0")


# -- the GameServer fields ------------------------------------------------------------------


def test_patch_fields_are_checked_against_okgs_crd() -> None:
    assert parse_spec_patch({"opsState": "Allocated", "deletionPriority": 5}) == {
        "opsState": "Allocated",
        "deletionPriority": 5,
    }
    assert parse_spec_patch({"updatePriority": "012", "networkDisabled": True}) == {
        "updatePriority": "012",
        "networkDisabled": True,
    }
    assert parse_spec_patch({"opsState": "Draining"}) == {"opsState": "Draining"}  # custom
    assert parse_spec_patch({"deletionPriority": 10.0}) == {"deletionPriority": 10}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ([], "must be a JSON object"),
        ({}, "nothing to change"),
        ({"opsstate": "None"}, "did you mean 'opsState'"),
        ({"status": {}}, "unknown field 'status'"),
        ({"opsState": ""}, "must not be empty"),
        ({"opsState": 1}, "must be a string"),
        ({"opsState": None}, "must be a string, got null"),
        ({"deletionPriority": True}, "must be an integer"),
        ({"deletionPriority": 1.5}, "must be an integer"),
        ({"deletionPriority": 2**31}, "32-bit"),
        ({"deletionPriority": "high"}, "OKG reads a non-numeric string as 0"),
        ({"deletionPriority": "50%"}, "not a 32-bit integer"),
        ({"networkDisabled": "true"}, "must be true or false"),
        # OKG copies these into Pod labels: a value no label can hold breaks its Pod updates.
        ({"opsState": "a" * 64}, "longer than 63 characters"),
        ({"opsState": "room full"}, "game.kruise.io/gs-opsState"),
        ({"opsState": "x\u0000y"}, "not a label value"),
        ({"opsState": "   "}, "not a label value"),
        ({"opsState": "-Draining"}, "not a label value"),
        ({"deletionPriority": -5}, "game.kruise.io/gs-deletion-priority"),
        ({"updatePriority": "+5"}, "cannot begin with '+'"),
        ({"updatePriority": "-12"}, "game.kruise.io/gs-update-priority"),
    ],
)
def test_bad_patches_are_400_with_the_reason(body: Any, why: str) -> None:
    with pytest.raises(ApiError) as e:
        parse_spec_patch(body)
    assert e.value.status == 400
    assert why in e.value.message


def _int32_string_schema() -> re.Pattern[str]:
    doc = yaml.safe_load(
        (importlib.resources.files("kidecar_plugins.game_api") / "openapi.yaml").read_text()
    )
    return re.compile(doc["components"]["schemas"]["Int32String"]["pattern"])


INT32_STRING = _int32_string_schema()


@given(
    st.one_of(
        st.integers(-(2**33), 2**33).map(str),
        st.integers(0, 2**32).map(lambda n: f"{n:012d}"),
        st.integers(-(2**33), 2**33).map(lambda n: f"+{n}" if n >= 0 else str(n)),
        st.from_regex(r"[+-]?0{0,3}[0-9]{1,11}", fullmatch=True),
        st.text(max_size=12),
    )
)
def test_the_documented_priority_string_pattern_is_exactly_what_is_accepted(text: str) -> None:
    try:
        check_priority("p", text)
        accepted = True
    except ApiError:
        accepted = False
    assert accepted == bool(INT32_STRING.search(text)) or text.endswith("\n"), text


def test_view_is_flat_and_complete() -> None:
    obj = {
        "metadata": {
            "name": "gs-0",
            "namespace": "ns",
            "resourceVersion": "7",
            "labels": {"a": "b"},
        },
        "spec": {"opsState": "None", "deletionPriority": 3},
        "status": {"currentState": "Ready"},
    }
    assert view(obj) == {
        "name": "gs-0",
        "namespace": "ns",
        "resourceVersion": "7",
        "opsState": "None",
        "updatePriority": None,
        "deletionPriority": 3,
        "networkDisabled": None,
        "labels": {"a": "b"},
        "annotations": {},
        "status": {"currentState": "Ready"},
    }


def test_the_manager_of_a_field_is_the_latest_writer() -> None:
    def entry(manager: str, time: str, fields: dict[str, Any]) -> dict[str, Any]:
        return {"manager": manager, "time": time, "fieldsV1": fields}

    obj = {
        "metadata": {
            "managedFields": [
                entry("okg", "2025-01-01T00:00:00Z", {"f:spec": {"f:opsState": {}}}),
                entry("kubectl-edit", "2025-01-02T00:00:00Z", {"f:spec": {"f:opsState": {}}}),
                entry("kidecar", "2025-01-03T00:00:00Z", {"f:spec": {"f:deletionPriority": {}}}),
            ]
        }
    }
    assert field_manager(obj, ("spec", "opsState")) == "kubectl-edit"
    assert field_manager(obj, ("spec", "networkDisabled")) is None
    assert field_manager({}, ("spec", "opsState")) is None


# -- coalescing -----------------------------------------------------------------------------


def ops(value: str) -> Write:
    return Write(GS, {"spec": {"opsState": value}}, "test")


def label(key: str, value: str | None, target: ObjectRef = GS) -> Write:
    return Write(target, {"metadata": {"labels": {key: value}}}, "test")


Sent = list[tuple[float, list[Write]]]


def batching(scenario: Callable[[Batcher, ManualClock, Sent], Awaitable[None]]) -> None:
    """Run ``scenario`` with a batcher (interval 0.5 s) on a manual clock; ``sent`` collects
    ``(time, writes)`` of each batch."""

    async def main() -> None:
        clock = ManualClock()
        sent: Sent = []
        batcher = Batcher(lambda w: sent.append((clock.now(), w)), 0.5, clock)
        batcher.open()
        await scenario(batcher, clock, sent)
        batcher.close()

    asyncio.run(main())


def test_a_single_write_goes_out_at_once() -> None:
    async def scenario(batcher: Batcher, clock: ManualClock, sent: Sent) -> None:
        batcher.submit([ops("Allocated")])
        assert sent == [(0.0, [ops("Allocated")])]

    batching(scenario)


def test_writes_within_the_interval_wait_for_its_end_newest_value_wins() -> None:
    async def scenario(batcher: Batcher, clock: ManualClock, sent: Sent) -> None:
        batcher.submit([ops("Allocated")])
        await clock.advance(0.1)
        batcher.submit([ops("None"), label("game.kidecar.io/a", "1")])
        await clock.advance(0.1)
        batcher.submit([ops("WaitToBeDeleted")])
        assert len(sent) == 1
        await clock.advance(0.29)
        assert len(sent) == 1
        await clock.advance(0.01)
        assert sent[1] == (0.5, [label("game.kidecar.io/a", "1"), ops("WaitToBeDeleted")])

    batching(scenario)


def test_a_hundred_writes_in_one_second_make_at_most_three_batches() -> None:
    async def scenario(batcher: Batcher, clock: ManualClock, sent: Sent) -> None:
        for i in range(100):
            batcher.submit([ops(f"s{i}")])
            await clock.advance(0.01)
        await clock.advance(5)
        assert len(sent) == 3  # at 0, 0.5 and 1.0 s
        assert sent[-1][1] == [ops("s99")]
        assert all(b[0] - a[0] >= 0.5 for a, b in itertools.pairwise(sent))

    batching(scenario)


def test_objects_have_their_own_intervals() -> None:
    async def scenario(batcher: Batcher, clock: ManualClock, sent: Sent) -> None:
        batcher.submit([ops("Allocated")])
        batcher.submit([label("game.kidecar.io/a", "1", POD)])
        assert [w[0].target for _, w in sent] == [GS, POD]

    batching(scenario)


def test_close_sends_what_waits_and_refuses_more() -> None:
    async def scenario(batcher: Batcher, clock: ManualClock, sent: Sent) -> None:
        batcher.submit([ops("Allocated")])
        batcher.submit([ops("None")])
        batcher.close()
        assert [w for _, w in sent] == [[ops("Allocated")], [ops("None")]]
        await clock.advance(1)
        assert clock.sleepers == 0 and len(sent) == 2
        with pytest.raises(BatcherClosed):
            batcher.submit([ops("Kill")])

    batching(scenario)


# -- config ---------------------------------------------------------------------------------


def plugin_config(tmp_path: Path, config: dict[str, Any]) -> GameApiConfig:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"plugins": [{"name": "game_api", "config": config}]}))
    loaded = load_config(path)
    result: GameApiConfig = loaded.plugins[0].config
    return result


def test_defaults(tmp_path: Path) -> None:
    config = plugin_config(tmp_path, {})
    assert config.listen == "127.0.0.1:5001"
    assert config.metadata_prefixes == ("game.kidecar.io/",)
    assert config.metadata_target == "gameserver"
    assert config.protected_ops_states == ("Maintaining", "Kill")
    assert config.write_interval_seconds == 0.5


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"listen": ":5001"}, "listen: ':5001' is reachable from outside the pod"),
        ({"listen": "0.0.0.0:5001"}, "set auth.tokenFile or auth.tokenEnv"),
        ({"listen": "127.0.0.1"}, "listen: '127.0.0.1': expected HOST:PORT"),
        ({"metadataPrefixes": [""]}, "metadataPrefixes[0]: '': must not be empty"),
        ({"metadataPrefixes": ["Game.IO/"]}, "metadataPrefixes[0]: 'Game.IO/': the part before"),
        ({"metadataPrefixes": ["a/b/"]}, "at most one '/'"),
        ({"metadataPrefixes": ["kubernetes.io/"]}, "every kubernetes.io/ key"),
        ({"metadataPrefixes": ["node.k8s.io/"]}, "k8s.io keys belong to Kubernetes"),
        ({"metadataPrefixes": ["game.kruise.io/"]}, "name the key past the '/'"),
        ({"metadataTarget": "node"}, "metadataTarget: must be one of"),
        ({"writeIntervalSeconds": 0}, "writeIntervalSeconds: must be > 0"),
        ({"writeIntervalSeconds": 1e308}, "writeIntervalSeconds: 1e+308: at most 60 seconds"),
        ({"protectedOpsStates": [""]}, "protectedOpsStates[0]: must not be empty"),
        ({"auth": {"tokenFile": "/x", "tokenEnv": "T"}}, "set tokenFile or tokenEnv, not both"),
    ],
)
def test_config_mistakes_are_reported_with_their_path(
    tmp_path: Path, config: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as e:
        plugin_config(tmp_path, config)
    assert any(problem in str(p) for p in e.value.problems), e.value.problems


def test_a_token_allows_listening_beyond_loopback(tmp_path: Path) -> None:
    config = plugin_config(tmp_path, {"listen": ":5001", "auth": {"tokenEnv": "GAME_API_TOKEN"}})
    assert config.listen == ":5001"


# -- the client -----------------------------------------------------------------------------


def test_the_client_says_what_to_do_when_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = GameApiClient(url, timeout=5)
    calls: list[Callable[[], object]] = [
        client.gameserver,
        lambda: client.set_ops_state("Allocated"),
        lambda: next(client.watch()),  # watch() connects on the first item
    ]
    for call in calls:
        with pytest.raises(GameApiUnreachable) as e:
            call()
        assert isinstance(e.value, OSError)  # what callers caught before
        assert url in str(e.value) and "game_api" in str(e.value)
