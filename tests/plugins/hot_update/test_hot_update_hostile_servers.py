"""What a hostile or broken download server can try, against a real sidecar and game.

* the URL policy holds on every reading of the path (issue 12 #1): Python's own
  ``http.server`` decodes ``%2F`` before it resolves ``..``;
* credentials in a URL never reach the log, the Events, the records or the API (#2);
* only a ``200`` is a download (#3);
* the file is the bytes the server sent, ``Content-Encoding`` or not (#7).

Every refused or failed update leaves the previous file in place and does not notify the game.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.plugins.hot_update.conftest import Running, StartSidecar
from tests.plugins.hot_update.fileserver import FileServer, QuietHTTPServer
from tests.reliability.faultserver import FaultyFileServer

SECRET = "AKIAxSECRETxSIGNATUREx1234567890"


class StaticServer:
    """Python's ``http.server`` serving a directory: it percent-decodes the path (``%2F``
    included) and then resolves ``..``, as many origin servers do."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def static(tmp_path: Path) -> Iterator[StaticServer]:
    root = tmp_path / "www"
    for directory, content in (("good", "good\n"), ("evil", "evil\n"), ("good/sub", "sub\n")):
        (root / directory).mkdir(parents=True, exist_ok=True)
        (root / directory / "index.html").write_text(content)
    server = StaticServer(root)
    yield server
    server.stop()


def loaded_nothing_new(r: Running, previous: str) -> None:
    """The previous file is intact, nothing temporary is left, the game was not signalled."""
    assert (r.file_dir / "index.html").read_text() == previous
    assert r.listing() == ["index.html"]
    assert r.game is not None and r.game.signals() == []


def test_the_origin_really_escapes_with_an_encoded_slash(static: StaticServer) -> None:
    """The premise: without kidecar's check, this URL fetches /evil/ from this server."""
    import urllib.request

    with urllib.request.urlopen(static.url("/good/..%2fevil/index.html")) as r:
        assert r.read() == b"evil\n"


@pytest.mark.parametrize(
    "path",
    [
        "/good/..%2fevil/index.html",
        "/good/..%2Fevil/index.html",
        "/good/%2e%2e/evil/index.html",
        "/good/%2E%2E%2Fevil/index.html",
        "/good/..%5cevil/index.html",
        "/good/%252e%252e%252fevil/index.html",
        "/good/..;/evil/index.html",
        "/good/sub/..%2f..%2fevil/index.html",
        "/good%2f..%2fevil/index.html",
    ],
)
def test_an_encoded_escape_from_the_prefix_is_refused(
    start_sidecar: StartSidecar, static: StaticServer, path: str
) -> None:
    r = start_sidecar(allowedUrlPrefixes=[static.url("/good")])
    (r.file_dir / "index.html").write_text("previous\n")
    status, body = r.api.post({"version": "v2", "url": static.url(path)})
    assert status == 403, body
    assert body["reason"] == "url not allowed"
    assert "allowedUrlPrefixes" in body["message"]
    assert static.requests == [], "nothing is fetched from outside the prefix"
    loaded_nothing_new(r, "previous\n")


def test_a_redirect_that_escapes_with_an_encoded_slash_is_refused(
    start_sidecar: StartSidecar, static: StaticServer, files: FileServer
) -> None:
    """The redirect comes from an allowed server and points, encoded, outside the prefix."""
    r = start_sidecar(allowedUrlPrefixes=[static.url("/good"), files.url("/redirect")])
    (r.file_dir / "index.html").write_text("previous\n")
    to = static.url("/good/..%2fevil/index.html")
    # Quoted once for the query, so that the Location the server sends still holds `%2f`.
    status, body = r.api.post({"version": "v2", "url": files.url(f"/redirect?to={quote(to)}")})
    assert status == 403, body
    assert "redirect" in body["message"]
    assert static.requests == []
    loaded_nothing_new(r, "previous\n")


def test_a_path_inside_the_prefix_still_works(
    start_sidecar: StartSidecar, static: StaticServer
) -> None:
    r = start_sidecar(allowedUrlPrefixes=[static.url("/good")])
    assert r.game is not None
    for path, content in (
        ("/good/sub/index.html", "sub\n"),
        ("/good/x/../index.html", "good\n"),
        ("/good/%73ub/index.html", "sub\n"),  # an encoded letter reads the same everywhere
    ):
        status, body = r.api.post({"version": "v2", "url": static.url(path)})
        assert status == 200, body
        r.game.wait_loaded(content)


def test_credentials_in_a_failing_download_url_are_never_shown(
    start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    """A presigned URL whose server breaks its Content-Length: the error text of the HTTP
    client quotes the URL; none of it reaches the log, the Event, the annotation or the API."""
    faulty = FaultyFileServer().start()
    try:
        faulty.add("game.cfg", "x" * 1000)
        r = start_sidecar()
        (r.file_dir / "index.html").write_text("previous\n")
        urls = (
            faulty.url(f"/drop/game.cfg?X-Amz-Signature={SECRET}&X-Amz-Expires=60"),
            faulty.url("/drop/game.cfg").replace("://", f"://admin:{SECRET}@"),
            faulty.url(f"/status/403?sig={SECRET}"),
            # The input: the HTTP client's error text for these quotes the whole URL.
            faulty.url(f"/bad-length/game.cfg?X-Amz-Signature={SECRET}"),
            faulty.url("/two-lengths/game.cfg").replace("://", f"://admin:{SECRET}@"),
        )
        for url in urls:
            status, body = r.api.post({"version": "v2", "url": url})
            assert status == 502, body
            assert SECRET not in json.dumps(body)
        assert SECRET not in json.dumps(r.api.get()[1])
        r.sidecar.wait_for(
            lambda: any(
                "two-lengths" in e["message"]
                for e in r.state()["events"]
                if e["reason"] == "HotUpdateFailed"
            ),
            10,
            "the HotUpdateFailed Event of the last one",
        )
        assert "Content-Length" in r.sidecar.log()  # the client's error text, redacted
        assert "payload" in r.sidecar.log().lower() or "not completed" in r.sidecar.log().lower()
        assert SECRET not in r.sidecar.log()
        assert SECRET not in json.dumps(r.state())
        loaded_nothing_new(r, "previous\n")
    finally:
        faulty.stop()


def test_credentials_of_an_applied_update_are_not_recorded(
    start_sidecar: StartSidecar, files: FileServer
) -> None:
    r = start_sidecar()
    assert r.game is not None
    url = files.add("v2/index.html", "new\n") + f"?X-Amz-Signature={SECRET}"
    url = url.replace("://", f"://deploy:{SECRET}@")
    status, body = r.api.post({"version": "v2", "url": url})
    assert status == 200, body
    r.game.wait_loaded("new\n")
    clean = files.url("/f/v2/index.html")
    assert body["url"] == clean
    assert r.api.get()[1]["url"] == clean
    r.sidecar.wait_for(
        lambda: "pod.gs-0" in r.state()["configmaps"]["sidecar-result"]["data"], 10, "record"
    )
    record = json.loads(r.state()["configmaps"]["sidecar-result"]["data"]["pod.gs-0"])
    assert record["url"] == clean and record["urlRedacted"] is True
    assert SECRET not in json.dumps(r.state()) and SECRET not in r.sidecar.log()
    # The download itself did use the credentials.
    assert any(SECRET in path for path in files.requests)


@pytest.mark.parametrize("code", [206, 204, 201, 203, 226])
def test_only_a_200_is_a_download(
    start_sidecar: StartSidecar, files: FileServer, code: int
) -> None:
    r = start_sidecar()
    (r.file_dir / "index.html").write_text("previous\n")
    payload = "x" * 100
    files.add("p.html", payload)
    url = files.url("/partial/p.html") if code == 206 else files.url(f"/status/{code}")
    status, body = r.api.post({"version": "v2", "url": url})
    assert status == 502, body
    assert body["reason"] == f"download failed: HTTP {code}"
    assert "only 200" in body["message"]
    loaded_nothing_new(r, "previous\n")
    r.sidecar.wait_for(
        lambda: r.annotation() == f"v2: Update failed: download failed: HTTP {code}", 10, "record"
    )


def tar_gz() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b"level data\n" * 100
        info = tarfile.TarInfo("levels/one.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_the_file_is_the_bytes_the_server_sent(
    start_sidecar: StartSidecar, files: FileServer, tmp_path: Path
) -> None:
    """A .tar.gz served with Content-Encoding: gzip is stored as the .tar.gz (``curl -o``)."""
    served = tar_gz()
    files.add("pack.tar.gz", served)
    r = start_sidecar()
    before = len(files.headers)
    sha = hashlib.sha256(served).hexdigest()
    status, body = r.api.post(
        {"version": "v2", "url": files.url("/encoded/pack.tar.gz"), "sha256": sha}
    )
    assert status == 200, body
    stored = (r.file_dir / "pack.tar.gz").read_bytes()
    assert stored == served and body["sha256"] == sha
    assert gzip.decompress(stored)[:512].startswith(b"levels/one.txt")  # still compressed
    asked = files.headers[before]
    assert asked.get("Accept-Encoding") == "identity"
