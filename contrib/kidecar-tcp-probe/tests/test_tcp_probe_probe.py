"""One probe against a real TCP server on 127.0.0.1: up, down, slow, wrong reply."""

from __future__ import annotations

import asyncio
from typing import Any

from kidecar_core import ProbeOutcome
from tcp_probe_servers import GamePort, closed_port

from kidecar_tcp_probe.config import Endpoint
from kidecar_tcp_probe.probe import preview, probe_once


def probe(port: int, **options: Any) -> ProbeOutcome:
    return asyncio.run(probe_once(Endpoint(port=port, **options)))


def test_an_open_port_is_a_success(game: GamePort) -> None:
    outcome = probe(game.port)
    assert (outcome.outcome, outcome.ok, outcome.reason) == ("success", True, "")
    assert 0 < outcome.seconds < 1
    game.wait_for_connections(1)


def test_a_closed_port_is_refused_at_once() -> None:
    outcome = probe(closed_port(), timeout=5)
    assert (outcome.outcome, outcome.ok) == ("refused", False)
    assert "connection refused" in outcome.reason
    assert outcome.seconds < 1


def test_the_ping_is_sent_and_the_reply_matched(game: GamePort) -> None:
    game.reply, game.wait_for = b"PONG players=3\n", b"PING\n"
    outcome = probe(game.port, send="PING\n", expect=r"^PONG players=\d+")
    assert outcome.ok, outcome.reason
    assert game.received == [b"PING\n"]


def test_binary_payloads_and_patterns(game: GamePort) -> None:
    game.reply, game.wait_for = b"\xff\xff\xff\xffI\x11", b"\xff\xff\xff\xffT"
    outcome = probe(game.port, send_hex="FFFFFFFF54", expect=r"\xff{4}I")
    assert outcome.ok, outcome.reason


def test_a_wrong_reply_fails_when_the_game_closes(game: GamePort) -> None:
    game.reply, game.close_after_reply = b"NOPE", True
    outcome = probe(game.port, expect="PONG", timeout=2)
    assert outcome.outcome == "reply"
    assert outcome.reason == "connection closed; reply b'NOPE' does not match /PONG/"
    assert outcome.seconds < 1  # no need to wait for the timeout


def test_a_wrong_reply_on_an_open_connection_times_out_with_what_was_received(
    game: GamePort,
) -> None:
    game.reply = b"NOPE"
    outcome = probe(game.port, expect="PONG", timeout=0.3)
    assert outcome.outcome == "timeout"
    assert outcome.reason == (
        "no answer within 0.3s while waiting for the reply (got b'NOPE', expected /PONG/)"
    )


def test_a_slow_reply_within_the_timeout_is_a_success(game: GamePort) -> None:
    game.reply, game.delay = b"PONG", 0.2
    outcome = probe(game.port, expect="PONG", timeout=2)
    assert outcome.ok, outcome.reason
    assert outcome.seconds >= 0.2


def test_the_timeout_is_honoured_for_a_hanging_game(game: GamePort) -> None:
    game.reply, game.delay = b"PONG", 3
    outcome = probe(game.port, expect="PONG", timeout=0.25)
    assert outcome.outcome == "timeout"
    assert "got nothing" in outcome.reason
    assert 0.25 <= outcome.seconds < 1


def test_a_reply_too_long_to_hold_the_pattern_fails(game: GamePort) -> None:
    game.reply = b"x" * 200
    outcome = probe(game.port, expect="PONG", max_reply_bytes=64, timeout=2)
    assert outcome.outcome == "reply"
    assert "in the first 64 bytes of the reply" in outcome.reason


def test_preview_is_short_and_printable() -> None:
    assert preview(b"\x00abc") == "b'\\x00abc'"
    assert preview(b"y" * 50, limit=4) == "b'yyyy'..."
