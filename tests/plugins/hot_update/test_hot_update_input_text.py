"""Hot-update input that is not what it seems (review of issue 12), with a real sidecar.

The kind: bytes or characters that some layer would silently turn into something else, or that
would raise deep inside and answer 500. Each is a 4xx that says what is wrong, and nothing is
downloaded or changed:

* an ``Authorization`` header with bytes that are not UTF-8: 403, not a 500 with a traceback;
* a percent-escape that is not UTF-8 text (``url=.../%ff.cfg``, in a form or in the query):
  aiohttp's parsers put U+FFFD in its place, so kidecar downloaded ``.../%EF%BF%BD.cfg``, a URL
  nobody sent; a lone surrogate in a JSON string (``"\\ud800"``) was dropped from the URL;
* a version with non-ASCII digits (Arabic-Indic ``v\\u0661``, which ``\\d`` matched);
* a file name so long that its temporary file cannot be created: 400, not 500.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from kidecar_core import AuthFailure, BearerAuth, TokenSource
from tests.plugins.hot_update.conftest import StartSidecar
from tests.plugins.hot_update.fileserver import FileServer

TOKEN = "t0ken-for-the-input-text-tests"
MAX_NAME_BYTES = 255 - len(".") - len(".12345678") - len(".kidecar-tmp")
"""233: the temporary file ``.<name>.<8 random>.kidecar-tmp`` must fit in NAME_MAX (255)."""


def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_text, _, payload = data.partition(b"\r\n\r\n")
    assert b"application/json" in head_text, data
    return int(head_text.split()[1]), json.loads(payload)


def test_authorization_bytes_that_are_not_utf8_are_a_403(start_sidecar: StartSidecar) -> None:
    r = start_sidecar(game=None, process_name="game", token=TOKEN)
    for given in (b"\xc3\xa9\xff", b"\xed\xa0\x80abc", TOKEN.encode() + b"\xff"):
        status, answer = raw_request(
            r.api_port,
            b"GET /hot-update HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + given
            + b"\r\nConnection: close\r\n\r\n",
        )
        assert status == 403, answer
        assert answer["reason"] == "forbidden"
    assert r.api.get()[0] == 200
    log = r.sidecar.log()
    assert "Traceback" not in log and "Error handling request" not in log


def test_the_core_token_check_compares_the_bytes_sent() -> None:
    """game_api uses the same check: a header aiohttp kept as surrogate escapes is a 403."""
    tokens = TokenSource(BearerAuth(token_env="T"), env={"T": "caf\xe9"})
    tokens.load()
    with pytest.raises(AuthFailure) as refused:
        tokens.check("Bearer \udcff\udcfe")
    assert refused.value.status == 403
    tokens.check("Bearer caf\xe9")  # the right token, sent as UTF-8


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("form", "form body has a percent-escape that is not utf-8 text"),
        ("query", "query string has a percent-escape that is not utf-8 text"),
        ("json", "url is not valid Unicode text (JSON body)"),
    ],
)
def test_text_that_is_not_text_is_a_400(
    start_sidecar: StartSidecar, files: FileServer, how: str, message: str
) -> None:
    r = start_sidecar(token=TOKEN)
    base = files.add("text/x.cfg", "x\n").rsplit("/", 1)[0]
    head = "POST /hot-update{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN
    head += "\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    if how == "form":
        query, ctype, body = "", "application/x-www-form-urlencoded", f"version=v2&url={base}/%ff"
    elif how == "query":
        query, ctype, body = f"?version=v2&url={base}/%ff", "application/x-www-form-urlencoded", ""
    else:
        query, ctype = "", "application/json"
        body = '{"version": "v2", "url": "' + base + '/\\ud800x.cfg"}'
    status, answer = raw_request(
        r.api_port,
        head.format(query=query, ctype=ctype, length=len(body)).encode(),
        body.encode(),
    )
    assert status == 400, answer
    assert message in answer["message"]
    assert not [p for p in files.requests if "%EF%BF%BD" in p or p.endswith("/x.cfg")]
    assert r.listing() == [] or "x.cfg" not in r.listing()


def test_a_version_with_non_ascii_digits_is_a_400(
    start_sidecar: StartSidecar, files: FileServer
) -> None:
    r = start_sidecar(token=TOKEN)
    url = files.add("digits/index.html", "digits\n")
    status, answer = r.api.post({"version": "v\u0661.\u0662", "url": url})
    assert status == 400, answer
    assert "is not a version like v1" in answer["message"]
    assert r.api.post({"version": "v1.2", "url": url})[0] == 200


def test_a_file_name_too_long_for_its_temporary_file_is_a_400(
    start_sidecar: StartSidecar, files: FileServer
) -> None:
    r = start_sidecar(token=TOKEN)
    longest = "a" * (MAX_NAME_BYTES - 4) + ".cfg"
    too_long = "b" * (MAX_NAME_BYTES - 3) + ".cfg"
    status, answer = r.api.post({"version": "v2", "url": files.add(too_long, "x\n")})
    assert status == 400, answer
    assert f"names a file longer than {MAX_NAME_BYTES} bytes" in answer["message"]
    status, answer = r.api.post({"version": "v2", "url": files.add(longest, "x\n")})
    assert status == 200, answer
    assert (r.file_dir / longest).read_text() == "x\n"
