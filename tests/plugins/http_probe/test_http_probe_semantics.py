"""Which answers a probe reads, against real HTTP(S) servers: status codes (a code, a list, a
range), redirects (kubelet's same-host rule), a state from a non-2xx answer, and TLS."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kidecar_core import ProbeOutcome
from kidecar_plugins.http_probe.config import Endpoint, JsonPathConfig
from kidecar_plugins.http_probe.probe import MAX_REDIRECTS, HttpTarget, make_session, probe_once
from tests.plugins.http_probe.game import GameHTTP, answer, redirect
from tests.plugins.http_probe.tls import Certificate, self_signed


@pytest.fixture
def game() -> Iterator[GameHTTP]:
    with GameHTTP() as server:
        yield server


@pytest.fixture
def other() -> Iterator[GameHTTP]:
    """A second server on the same host name, another port."""
    with GameHTTP() as server:
        yield server


def probe(url: str, **options: Any) -> ProbeOutcome:
    target = HttpTarget.prepare(Endpoint(url=url, timeout=5, **options))

    async def run() -> ProbeOutcome:
        async with make_session() as session:
            return await probe_once(session, target)

    return asyncio.run(run())


# -- status codes -------------------------------------------------------------------------------


def test_a_list_of_codes_reads_the_state_from_each(game: GameHTTP) -> None:
    path = JsonPathConfig("state")
    game.set("/s", answer({"state": "draining"}, status=503))
    outcome = probe(game.url("/s"), expected_status_code=(200, 503), json_path_config=path)
    assert (outcome.state, outcome.detail["status"]) == ("draining", 503)
    # The default (200) says the same answer is a failure: a draining game looks dead.
    outcome = probe(game.url("/s"), json_path_config=path)
    assert (outcome.outcome, outcome.reason) == ("status", "status 503, expected 200")


def test_a_listed_non_2xx_answer_without_a_state_is_a_failed_probe(game: GameHTTP) -> None:
    game.set("/s", answer("<html>502 Bad Gateway</html>", status=503))
    outcome = probe(
        game.url("/s"), expected_status_code=(200, 503), json_path_config=JsonPathConfig("state")
    )
    assert outcome.outcome == "body" and outcome.state is None
    game.set("/s", answer({"state": "x"}, status=500))
    outcome = probe(game.url("/s"), expected_status_code=(200, "503"))
    assert outcome.reason == "status 500, expected [200, 503]"


def test_a_range_includes_both_ends(game: GameHTTP) -> None:
    for status in (200, 201, 299):
        game.set("/s", answer("ok", status=status))
        assert probe(game.url("/s"), expected_status_code="200-299").outcome == "success"
    game.set("/s", answer("ok", status=300))
    outcome = probe(game.url("/s"), expected_status_code="200-299")
    assert outcome.reason == "status 300, expected 200-299"


def test_the_kubelet_range_reads_a_redirect_instead_of_following_it(game: GameHTTP) -> None:
    game.set("/s", redirect(game.url("/elsewhere"), body="Allocated"))
    game.set("/elsewhere", "None")
    outcome = probe(game.url("/s"), expected_status_code="200-399")
    assert (outcome.state, outcome.detail["status"]) == ("Allocated", 302)
    assert game.count("/elsewhere") == 0


# -- redirects ----------------------------------------------------------------------------------


def test_an_expected_3xx_is_read_not_followed(game: GameHTTP) -> None:
    """The issue's case: ``expectedStatusCode: 301`` could never match."""
    game.set("/s", redirect(game.url("/moved"), status=301, body="WaitToBeDeleted"))
    game.set("/moved", "None")
    outcome = probe(game.url("/s"), expected_status_code=301)
    assert (outcome.state, outcome.detail["status"]) == ("WaitToBeDeleted", 301)
    assert game.count("/moved") == 0
    # Answered 302 instead: not followed either, and the reason says where it pointed.
    game.set("/s", redirect(game.url("/moved")))
    outcome = probe(game.url("/s"), expected_status_code=301)
    assert outcome.reason == (
        f"status 302 (redirect to {game.url('/moved')} not followed), expected 301"
    )


def test_redirects_on_the_same_host_are_followed_any_port(game: GameHTTP, other: GameHTTP) -> None:
    game.set("/a", redirect(game.url("/b"), status=301))
    game.set("/b", redirect(other.url("/c"), status=307))  # same host name, another port
    other.set("/c", "Allocated")
    outcome = probe(game.url("/a"))
    assert (outcome.state, outcome.detail["status"]) == ("Allocated", 200)
    assert (game.count("/b"), other.count("/c")) == (1, 1)


def test_a_redirect_to_another_host_is_not_followed_by_default(game: GameHTTP) -> None:
    # 127.0.0.1 and localhost are the same machine but not the same host name (kubelet compares
    # URL.Hostname()).
    game.set("/a", redirect(game.url("/b", host="localhost")))
    game.set("/b", "Allocated")
    outcome = probe(game.url("/a"))
    assert outcome.outcome == "status"
    assert outcome.reason == (
        f"status 302 (redirect to {game.url('/b', host='localhost')} not followed), expected 200"
    )
    assert game.count("/b") == 0


def test_always_follows_other_hosts_without_credentials(game: GameHTTP) -> None:
    game.set("/a", redirect(game.url("/b", host="localhost")))
    game.set("/b", "Allocated")
    headers = {"Authorization": "Bearer secret", "X-Game": "tank"}
    outcome = probe(game.url("/a"), follow_redirects="Always", headers=headers)
    assert outcome.state == "Allocated"
    first, second = game.requests("/a")[0], game.requests("/b")[0]
    assert first.headers["Authorization"] == "Bearer secret"
    assert "Authorization" not in second.headers and second.headers["X-Game"] == "tank"


def test_never_reads_the_first_answer(game: GameHTTP) -> None:
    game.set("/a", redirect(game.url("/b")))
    game.set("/b", "Allocated")
    assert probe(game.url("/a"), follow_redirects="Never").outcome == "status"
    assert game.count("/b") == 0


def test_a_redirect_loop_stops_after_ten(game: GameHTTP) -> None:
    game.set("/loop", redirect(game.url("/loop")))
    outcome = probe(game.url("/loop"))
    assert (outcome.outcome, outcome.reason) == ("error", "stopped after 10 redirects")
    assert game.count("/loop") == MAX_REDIRECTS + 1


def test_post_becomes_get_on_303_and_stays_post_on_307(game: GameHTTP) -> None:
    game.set("/see-other", redirect(game.url("/state"), status=303))
    game.set("/temporary", redirect(game.url("/state"), status=307))
    game.set("/state", "None")
    body = '{"q": "state"}'
    headers = {"Content-Type": "application/json"}
    assert probe(game.url("/see-other"), method="POST", body=body, headers=headers).ok
    assert probe(game.url("/temporary"), method="POST", body=body, headers=headers).ok
    after_303, after_307 = game.requests("/state")
    assert (after_303.method, after_303.body) == ("GET", b"")
    assert "Content-Type" not in after_303.headers
    assert (after_307.method, after_307.body) == ("POST", body.encode())


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_game(certificate: Certificate) -> Iterator[GameHTTP]:
    with GameHTTP(tls=certificate.server_context()) as server:
        server.set("/s", "Allocated")
        yield server


def test_a_self_signed_certificate_fails_by_default_and_says_what_to_do(
    https_game: GameHTTP,
) -> None:
    outcome = probe(https_game.url("/s"))
    assert outcome.outcome == "error"
    assert "TLS certificate of 127.0.0.1 not trusted" in outcome.reason
    assert "self-signed certificate" in outcome.reason
    assert "set caFile" in outcome.reason and "insecureSkipVerify: true" in outcome.reason


def test_insecure_skip_verify_accepts_it(https_game: GameHTTP) -> None:
    assert probe(https_game.url("/s"), insecure_skip_verify=True).state == "Allocated"


def test_ca_file_trusts_it_and_only_it(
    https_game: GameHTTP, certificate: Certificate, tmp_path: Path
) -> None:
    assert probe(https_game.url("/s"), ca_file=str(certificate.cert)).state == "Allocated"
    stranger = self_signed(tmp_path, "stranger")
    outcome = probe(https_game.url("/s"), ca_file=str(stranger.cert))
    assert outcome.outcome == "error" and "not trusted" in outcome.reason
