"""The hot-update server under abuse (issue 12 #8, #9), with real sidecars and raw sockets.

* a JSON body nested 20,000 deep, a key given twice, an unknown charset: a JSON 400, like a
  form, never aiohttp's plain-text 500;
* 300 silent connections while the process may open 256 files: ``/healthz`` and an authorised
  POST are still answered (the connection idle the longest makes room), and the silent ones are
  closed after the header timeout;
* hundreds of unauthenticated or malformed requests: a few log lines, no traceback;
* a body that never finishes arriving: 408 after the body timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kidecar_core._runtime.servers import HEADER_TIMEOUT
from kidecar_core.testing import Sidecar, free_port
from kidecar_plugins.hot_update import api as api_module
from tests.plugins.hot_update.conftest import Running, StartSidecar
from tests.plugins.hot_update.fileserver import FileServer
from tests.plugins.hot_update.harness import Api, Game, hot_update_config

TOKEN = "s3cr3t-token-for-the-server-limits"


def raw_post(port: int, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    head = (
        f"POST /hot-update HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_text, _, payload = data.partition(b"\r\n\r\n")
    status = int(head_text.split()[1])
    content_type_line = [
        line for line in head_text.decode().splitlines() if line.lower().startswith("content-type")
    ]
    assert content_type_line and "application/json" in content_type_line[0], head_text
    return status, json.loads(payload)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"[" * 20_000, "application/json", "nested deeper than 32 levels"),
        (b'{"version": ' + b"[" * 20_000, "application/json", "nested deeper than 32 levels"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "application/json", "nested deeper"),
        (b'{"version": "v1", "version": "v2", "url": "http://h/x"}', "application/json",
         "version is given twice with different values"),
        (b"version=v1&version=v2&url=http://h/x", "application/x-www-form-urlencoded",
         "version is given twice with different values"),
        (b'{"version": "v1"}', "application/json; charset=no-such-charset", "not readable text"),
        (b'{"version": "v1\xff"}', "application/json", "not readable text"),
        (b'{"version": "v1",}', "application/json", "not valid JSON"),
    ],
)  # fmt: skip
def test_bad_bodies_are_json_400s(
    start_sidecar: StartSidecar, body: bytes, content_type: str, message: str
) -> None:
    r = start_sidecar(game=None, process_name="game")
    status, answer = raw_post(r.api_port, body, content_type)
    assert status == 400, answer
    assert message in answer["message"]
    assert "Traceback" not in r.sidecar.log()
    assert "Error handling request" not in r.sidecar.log()


def test_a_key_given_twice_alike_is_fine_in_json_and_forms(
    start_sidecar: StartSidecar, files: FileServer
) -> None:
    r = start_sidecar()
    assert r.game is not None
    url = files.add("twice/index.html", "twice\n")
    body = json.dumps({"version": "v1", "url": url}).encode()[:-1] + b', "version": "v1"}'
    assert raw_post(r.api_port, body)[0] == 200
    form = f"version=v2&url={url}&version=v2".encode()
    assert raw_post(r.api_port, form, "application/x-www-form-urlencoded")[0] == 200


@pytest.fixture
def limited(tmp_path: Path, files: FileServer) -> Iterator[Running]:
    """A sidecar (with a token, and a game) that may open 256 files."""
    file_dir = tmp_path / "downloads"
    file_dir.mkdir()
    game = Game(tmp_path, file_dir / "index.html").start()
    port = free_port()
    config = hot_update_config(
        file_dir, port, process_name=game.title, auth={"tokenEnv": "HOT_UPDATE_TOKEN"}
    )
    sidecar = Sidecar(
        tmp_path / "s", config, env={"HOT_UPDATE_TOKEN": TOKEN}, open_files=256
    ).start(wait_ready=True)
    try:
        yield Running(sidecar, game, Api(port, TOKEN), file_dir)
    finally:
        sidecar.stop()
        game.stop()


def test_silent_connections_cannot_starve_the_others(limited: Running, files: FileServer) -> None:
    r = limited
    silent: list[socket.socket] = []
    try:
        for _ in range(300):
            silent.append(socket.create_connection(("127.0.0.1", r.api_port), timeout=10))
        assert r.sidecar.get("/healthz")[0] == 200
        status, body = r.api.post({"version": "v2", "url": files.add("busy/index.html", "ok\n")})
        assert status == 200, body
        assert r.game is not None
        r.game.wait_loaded("ok\n")
        # The silent ones were closed: to make room, or after the header timeout.
        deadline = time.monotonic() + HEADER_TIMEOUT + 30
        for sock in silent:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""
        log = r.sidecar.log()
        assert "connection cap reached" in log
        assert log.count("connection cap reached") <= 12, "rate-limited"
        assert "Traceback" not in log and "out of system resource" not in log
    finally:
        for sock in silent:
            sock.close()


def test_unauthenticated_and_malformed_requests_do_not_flood_the_log(limited: Running) -> None:
    r = limited
    before = len(r.sidecar.log().splitlines())
    for i in range(200):
        token = None if i % 2 else "wrong"
        assert r.api.post({"version": "v1", "url": "http://h/x"}, token=token)[0] in (401, 403)
    for _ in range(100):
        with socket.create_connection(("127.0.0.1", r.api_port), timeout=10) as sock:
            sock.sendall(b"POST /hot-update HTTP/1.1\r\nHost: x\r\nBad Header\x01: y\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(4096):
                    pass
    assert r.sidecar.get("/healthz")[0] == 200
    lines = r.sidecar.log().splitlines()[before:]
    refused = [line for line in lines if "refused (40" in line]
    malformed = [line for line in lines if "malformed HTTP request" in line]
    assert 1 <= len(refused) <= 20, refused  # at most 10 a minute for each of 401 and 403
    assert 1 <= len(malformed) <= 10, malformed
    assert not [line for line in lines if "Traceback" in line or "ERROR" in line]


def test_a_body_that_never_finishes_is_408(start_sidecar: StartSidecar) -> None:
    r = start_sidecar(game=None, process_name="game")
    with socket.create_connection(
        ("127.0.0.1", r.api_port), timeout=api_module.BODY_TIMEOUT + 30
    ) as sock:
        sock.sendall(
            b"POST /hot-update HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"version": '
        )  # and the rest never comes
        data = b""
        while b"}" not in data and (chunk := sock.recv(65536)):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert int(head.split()[1]) == 408, data
    assert json.loads(payload)["reason"] == "request timeout"


def test_the_http_client_of_the_tests_sees_json_for_oversized_bodies(
    start_sidecar: StartSidecar,
) -> None:
    r = start_sidecar(game=None, process_name="game")

    async def main() -> tuple[int, str]:
        async with aiohttp.ClientSession() as session:
            big = b'{"version": "' + b"1" * (200 * 1024) + b'"}'
            url = f"http://127.0.0.1:{r.api_port}/hot-update"
            async with session.post(
                url, data=big, headers={"Content-Type": "application/json"}
            ) as response:
                return response.status, response.headers.get("Content-Type", "")

    status, content_type = asyncio.run(main())
    assert status == 413 and content_type.startswith("application/json")


def first_response(sock: socket.socket) -> bytes:
    """The bytes read until the first response is complete (its head and ``Content-Length``
    bytes of body), or until the server closes the connection. It does not wait for the close:
    a server may keep the connection open until its idle timeout (seconds) after answering."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while True:
            head, found, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:[ \t]*(\d+)\r?$", head)
            if found and length and len(body) >= int(length.group(1)):
                return data
            if not (chunk := sock.recv(65536)):
                return data
            data += chunk


@pytest.mark.parametrize("expect", [True, False])
def test_a_content_length_over_the_limit_is_413_before_any_body(
    limited: Running, expect: bool
) -> None:
    """Review of issue 12: with ``Expect: 100-continue`` the server answered ``100 Continue``
    and then waited for 100 GB (408); without it, it waited for the body too (408). Both are a
    JSON 413 now, and no body is read."""
    head = (
        "POST /hot-update HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN + "\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000000000\r\n"
        + ("Expect: 100-continue\r\n" if expect else "")
        + "\r\n"
    )
    with socket.create_connection(("127.0.0.1", limited.api_port), timeout=60) as sock:
        sock.sendall(head.encode())  # and no body at all
        data = first_response(sock)
    assert b"100 Continue" not in data, data
    assert data.startswith(b"HTTP/1.1 413"), data
    assert b"application/json" in data, data
