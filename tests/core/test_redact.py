"""Credentials never reach logs or Events: the one redaction, and where the core applies it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest
from aiohttp.http_exceptions import BadHttpMessage

from kidecar_core import redact_text, redact_url
from kidecar_core._runtime import logs
from kidecar_core._store.events import EventRecorder
from kidecar_core._store.local import LocalStore
from kidecar_core._store.objects import Event, ObjectRef, PodIdentity

SECRET = "S3cr3tSignatureValue"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"https://cdn.example.com/v2/game.pak?X-Amz-Signature={SECRET}&X-Amz-Expires=60",
         "https://cdn.example.com/v2/game.pak"),
        (f"http://user:{SECRET}@127.0.0.1:8080/game.cfg", "http://127.0.0.1:8080/game.cfg"),
        (f"http://{SECRET}@host/x", "http://host/x"),
        (f"https://[::1]:8443/a/b?sig={SECRET}#frag", "https://[::1]:8443/a/b"),
        ("http://host/plain/path.tar.gz", "http://host/plain/path.tar.gz"),
        (f"http://host:99999/x?s={SECRET}", "<invalid url>"),
        (f"not a url?token={SECRET}", "<invalid url>"),
    ],
)  # fmt: skip
def test_redact_url_strips_userinfo_query_and_fragment(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "text",
    [
        # aiohttp's error texts quote the URL they failed on
        f"400, message='Not enough data to satisfy content length header.', "
        f"url='http://127.0.0.1:1234/game.cfg?X-Amz-Signature={SECRET}'",
        f"Cannot connect to host cdn:443 ssl:default [URL('https://user:{SECRET}@cdn/x')]",
        f"http://user:{SECRET}@cdn:bad/x",
        f"Authorization: Bearer {SECRET}",
        f"Authorization: Basic {SECRET}==",
        f"redirect to <http://h/x?token={SECRET}>",
    ],
)
def test_redact_text_finds_urls_and_tokens_in_free_text(text: str) -> None:
    assert SECRET not in redact_text(text)


def test_redact_text_leaves_ordinary_messages_alone() -> None:
    for text in (
        "missing bearer token: send 'Authorization: Bearer <token>'",
        "endpoint 0 (http://127.0.0.1:8080/state): state idle -> busy",
        "basic checks passed",
    ):
        assert redact_text(text) == text


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_log_line_is_redacted(fmt: logs.LogFormat) -> None:
    formatter = logs.JsonFormatter() if fmt == "json" else logs.TextFormatter()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.redact.{fmt}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("download of %s failed", f"http://h/x?sig={SECRET}")
        try:
            raise ValueError(f"url='http://u:{SECRET}@h/x'")
        except ValueError:
            logger.exception("with a traceback")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert SECRET not in out
    assert "http://h/x" in out
    if fmt == "json":
        assert [json.loads(line)["level"] for line in out.splitlines()] == ["warning", "error"]


def test_events_are_redacted_before_they_are_stored(tmp_path: Path) -> None:
    async def main() -> None:
        who = PodIdentity("gs-0", "default")
        store = LocalStore(tmp_path / "state.json", who)
        recorder = EventRecorder(store, ObjectRef.pod(who))
        recorder.start()
        recorder.record(Event("HotUpdateFailed", f"from https://cdn/x.pak?Signature={SECRET}"))
        await recorder.drain(5)
        await recorder.close()

    asyncio.run(main())
    events = json.loads((tmp_path / "state.json").read_text())["events"]
    assert [e["message"] for e in events] == ["from https://cdn/x.pak"]


def test_log_budget_counts_what_it_held_back() -> None:
    now = [0.0]
    budget = logs.LogBudget(burst=3, per=60, clock=lambda: now[0])
    assert [budget.allow() for _ in range(5)] == [(True, 0)] * 3 + [(False, 0)] * 2
    now[0] = 61.0
    assert budget.allow() == (True, 2)
    assert budget.allow() == (True, 0)


def test_malformed_requests_log_one_line_without_traceback() -> None:
    now = [0.0]
    server_log = logging.getLogger("test.aiohttp.server")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    server_log.addHandler(keep)
    server_log.propagate = False
    server_log.addFilter(logs.ClientErrorFilter(logs.LogBudget(2, 60, lambda: now[0])))
    try:
        for _ in range(5):
            try:
                raise BadHttpMessage("Invalid header value char")
            except BadHttpMessage:
                server_log.exception("Error handling request from %s", "127.0.0.1")
        try:
            raise RuntimeError("a bug in a handler")
        except RuntimeError:
            server_log.exception("Error handling request from %s", "127.0.0.1")
        now[0] = 100.0
        try:
            raise BadHttpMessage("again")
        except BadHttpMessage:
            server_log.exception("Error handling request from %s", "127.0.0.1")
    finally:
        server_log.removeHandler(keep)
    client = [r for r in records if r.exc_info is None]
    assert [r.levelname for r in client] == ["WARNING"] * 3
    assert "malformed HTTP request from 127.0.0.1" in client[0].getMessage()
    assert "(3 more since the last one not logged)" in client[2].getMessage()
    bugs = [r for r in records if r.exc_info is not None]
    assert len(bugs) == 1 and bugs[0].levelname == "ERROR"  # kidecar's own errors keep theirs
