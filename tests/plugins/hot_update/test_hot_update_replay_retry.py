"""The replay's download is retried on a DownloadFailed only (decided by the error's class, not
its HTTP status number), and the error raised keeps its class when it gains the note about a URL
recorded without its credentials."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest

from kidecar_plugins.hot_update.download import Downloaded
from kidecar_plugins.hot_update.errors import DownloadFailed, UpdateError, UrlNotAllowed
from kidecar_plugins.hot_update.request import UpdateRequest
from kidecar_plugins.hot_update.retry import download_with_retries

DOWNLOADED = cast(Downloaded, object())


def fetcher(*outcomes: UpdateError | None) -> tuple[Any, list[int]]:
    """A fetch that raises the given errors in turn (``None``: succeeds); and its call count."""
    calls: list[int] = []

    async def fetch() -> Downloaded:
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if outcome is not None:
            raise outcome
        return DOWNLOADED

    return fetch, calls


def request(recorded_without_credentials: bool = False) -> UpdateRequest:
    return UpdateRequest.create(
        "v2", "http://127.0.0.1:1/v2/game.pak", None,
        recorded_without_credentials=recorded_without_credentials,
    )  # fmt: skip


def test_a_download_failure_is_retried_while_the_deadline_allows() -> None:
    fetch, calls = fetcher(DownloadFailed("download failed", "connection reset"), None)
    got = asyncio.run(download_with_retries(fetch, request(), time.monotonic() + 3600))
    assert got is DOWNLOADED
    assert len(calls) == 2


def test_an_error_of_another_class_is_not_retried() -> None:
    fetch, calls = fetcher(UrlNotAllowed("'http://169.254.169.254/' refused"), None)
    with pytest.raises(UrlNotAllowed):
        asyncio.run(download_with_retries(fetch, request(), time.monotonic() + 3600))
    assert len(calls) == 1


def test_the_note_on_a_url_without_credentials_keeps_the_class() -> None:
    fetch, calls = fetcher(DownloadFailed("download failed: HTTP 403", "HTTP 403"))
    with pytest.raises(DownloadFailed) as caught:
        asyncio.run(download_with_retries(fetch, request(True), time.monotonic()))
    assert len(calls) == 1  # the deadline leaves no time for a second try
    assert caught.value.status == 502
    assert caught.value.reason == "download failed: HTTP 403"
    assert caught.value.message == (
        "HTTP 403 (the URL was recorded without its credentials, which kidecar never stores: "
        "send the update again)"
    )
