"""One probe against a real game HTTP server: timeout honoured, failures classified, limits kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kidecar_core import ProbeOutcome
from kidecar_core.testing import free_port
from kidecar_plugins.http_probe.config import Endpoint, JsonPathConfig
from kidecar_plugins.http_probe.probe import HttpTarget, display_url, make_session, probe_once
from tests.plugins.http_probe.game import Answer, GameHTTP, answer


@pytest.fixture
def game() -> Iterator[GameHTTP]:
    with GameHTTP() as server:
        yield server


def probe(endpoint: Endpoint) -> ProbeOutcome:
    async def run() -> ProbeOutcome:
        async with make_session() as session:
            return await probe_once(session, HttpTarget.prepare(endpoint))

    return asyncio.run(run())


def endpoint(url: str, **options: Any) -> Endpoint:
    return Endpoint(url=url, **options)


def test_the_trimmed_body_is_the_state(game: GameHTTP) -> None:
    game.set("/state", "  Allocated\n")
    outcome = probe(endpoint(game.url("/state")))
    assert (outcome.outcome, outcome.state, outcome.detail) == (
        "success",
        "Allocated",
        {"status": 200},
    )
    assert outcome.seconds > 0


def test_the_json_path_selects_the_state(game: GameHTTP) -> None:
    game.set("/state", {"data": {"state": "WaitToBeDeleted", "players": 0}})
    ep = endpoint(game.url("/state"), json_path_config=JsonPathConfig("data.players"))
    assert probe(ep).state == "0"


def test_method_headers_and_body_are_sent(game: GameHTTP) -> None:
    game.set("/state", "None")
    ep = endpoint(
        game.url("/state?x=1"),
        method="POST",
        headers={"Authorization": "Bearer t0k3n", "X-Game": "tank"},
        body='{"q": "state"}',
    )
    assert probe(ep).state == "None"
    (request,) = game.requests("/state")
    assert request.method == "POST"
    assert request.headers["Authorization"] == "Bearer t0k3n"
    assert request.headers["X-Game"] == "tank"
    assert request.body == b'{"q": "state"}'


def test_an_unexpected_status_is_a_failure(game: GameHTTP) -> None:
    game.set("/state", answer("Allocated", status=500))
    outcome = probe(endpoint(game.url("/state")))
    assert (outcome.outcome, outcome.state, outcome.detail) == ("status", None, {"status": 500})
    assert outcome.reason == "status 500, expected 200"
    game.set("/state", answer("Allocated", status=202))
    assert probe(endpoint(game.url("/state"), expected_status_code=202)).state == "Allocated"
    game.set("/state", answer("Allocated", status=200))
    assert probe(endpoint(game.url("/state"), expected_status_code=202)).outcome == "status"


def test_the_timeout_is_honoured(game: GameHTTP) -> None:
    game.set("/slow", answer("None", delay=10))
    started = time.monotonic()
    outcome = probe(endpoint(game.url("/slow"), timeout=0.3))
    elapsed = time.monotonic() - started
    assert outcome.outcome == "timeout"
    assert "0.3s" in outcome.reason
    assert 0.3 <= outcome.seconds < 1.5
    assert elapsed < 2


def test_a_slow_answer_within_the_timeout_succeeds(game: GameHTTP) -> None:
    game.set("/slow", answer("Allocated", delay=0.3))
    assert probe(endpoint(game.url("/slow"), timeout=2)).state == "Allocated"


def test_a_refused_connection_is_a_failure() -> None:
    outcome = probe(endpoint(f"http://127.0.0.1:{free_port()}/state", timeout=2))
    assert outcome.outcome == "error"
    assert outcome.state is None and outcome.reason


def test_garbage_and_missing_paths_are_failures(game: GameHTTP) -> None:
    ep = endpoint(game.url("/state"), json_path_config=JsonPathConfig("data.state"))
    game.set("/state", b"\x00\xff garbage \xfe")
    assert probe(ep).outcome == "body"
    game.set("/state", {"data": {"other": 1}})
    outcome = probe(ep)
    assert (outcome.outcome, outcome.reason) == ("body", "'data.state' not found in the body")
    game.set("/state", b"\xff\xfe\xfd")
    assert probe(endpoint(game.url("/state"))).outcome == "body"


def test_bodies_over_the_limit_are_failures(game: GameHTTP) -> None:
    game.set("/big", "x" * 2000)
    outcome = probe(endpoint(game.url("/big"), max_body_bytes=1000))
    assert (outcome.outcome, outcome.reason) == ("body", "answer larger than 1000 bytes")
    game.set("/big", "x" * 1000)
    assert probe(endpoint(game.url("/big"), max_body_bytes=1000)).state == "x" * 1000


def test_a_large_body_within_the_default_limit(game: GameHTTP) -> None:
    filler = "y" * (900 * 1024)
    game.set("/big", {"filler": filler, "data": {"state": "Allocated"}})
    ep = endpoint(game.url("/big"), json_path_config=JsonPathConfig("data.state"))
    assert probe(ep).state == "Allocated"


def test_a_connection_dropped_midway_is_a_failure(game: GameHTTP) -> None:
    # The server claims a body it never sends and hangs up (it is stopped while "hanging").
    game.set("/drop", Answer(b"", 200, delay=5))

    async def run() -> ProbeOutcome:
        async with make_session() as session:
            task = asyncio.create_task(
                probe_once(session, HttpTarget.prepare(endpoint(game.url("/drop"), timeout=5)))
            )
            await asyncio.to_thread(game.wait_for_requests, "/drop", 1)
            await asyncio.to_thread(game.stop)
            return await task

    outcome = asyncio.run(run())
    assert outcome.outcome == "error"
    assert outcome.seconds < 4


def test_urls_are_shown_without_credentials_or_query() -> None:
    assert (
        display_url("http://u:pw@127.0.0.1:8080/state?token=s#x") == "http://127.0.0.1:8080/state"
    )
