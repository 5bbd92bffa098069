"""``loadPatchType: request`` against reload endpoints that misbehave (issue 12 #4), and the Go
predecessor's request config (issue 13 #3).

A real sidecar calls real reload endpoints: one that answers forever (the answer is read up to a
small cap, the connection closed), ones that redirect (followed only on the configured origin,
with the same method and body), and the Go ``request: {address, port}`` config.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from kidecar_core import ConfigError
from kidecar_core._config.catalog import load_parsed
from kidecar_core._config.strict_yaml import parse_yaml
from kidecar_core._plugins.manager import Plugins
from kidecar_core.testing import free_port
from kidecar_plugins.hot_update.reload import MAX_ANSWER_BYTES
from tests.plugins.hot_update.conftest import StartSidecar
from tests.plugins.hot_update.fileserver import FileServer, QuietHTTPServer, wait_until
from tests.plugins.hot_update.harness import Game

CHUNK = b"x" * 65536


class ReloadServer:
    """Reload endpoints on 127.0.0.1 (any method): ``/ok``, ``/endless`` (200 and a body that
    never ends; ``sent`` counts what reached the socket before the client hung up),
    ``/redirect?to=URL&code=N``, ``/loop`` (redirects to itself), ``/fail`` (500 with a long
    body). ``calls`` records ``(method, path, body)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.sent = 0
        self.endless_closed = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                server.calls.append((self.command, self.path, body))
                with contextlib.suppress(ConnectionError):
                    server.route(self)

            do_GET = do_POST = do_PUT = do_PATCH = handle_any

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/endless":
            h.send_response(200)
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            try:
                while True:  # until the client closes the connection
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
                    self.sent += len(CHUNK)
            except OSError:
                self.endless_closed.set()
            return
        if parts.path == "/loop":
            h.send_response(307)
            h.send_header("Location", "/loop")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if parts.path == "/redirect":
            h.send_response(int(query.get("code", 307)))
            h.send_header("Location", query["to"])
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        status, body = (500, b"broken: " + b"y" * 10_000) if parts.path == "/fail" else (200, b"{}")
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def reload_server() -> Iterator[ReloadServer]:
    server = ReloadServer()
    yield server
    server.stop()


def request_mode(url: str, **extra: Any) -> dict[str, Any]:
    return {"loadPatchType": "request", "request": {"url": url, "timeoutSeconds": 10, **extra}}


def test_an_endless_reload_answer_is_read_up_to_a_cap(
    start_sidecar: StartSidecar, files: FileServer, reload_server: ReloadServer
) -> None:
    r = start_sidecar(game=None, **request_mode(reload_server.url("/endless")))
    status, body = r.api.post({"version": "v2", "url": files.add("e/index.html", "new\n")})
    assert status == 200, body
    assert "answered 200" in body["message"]
    # The sidecar hung up after a few bytes; what the server got rid of before noticing is
    # socket buffers, not gigabytes read into memory.
    assert reload_server.endless_closed.wait(10), "the sidecar kept reading the endless answer"
    assert reload_server.sent < 64 * 1024 * 1024
    assert r.sidecar.get("/healthz")[0] == 200


def test_a_failing_reload_answer_is_quoted_short(
    start_sidecar: StartSidecar, files: FileServer, reload_server: ReloadServer
) -> None:
    r = start_sidecar(game=None, **request_mode(reload_server.url("/fail"), retries=0))
    status, body = r.api.post({"version": "v2", "url": files.add("f/index.html", "new\n")})
    assert status == 503, body
    assert "answered 500: 'broken: yyy" in body["message"]
    assert len(body["message"]) < MAX_ANSWER_BYTES


def test_a_redirect_off_the_configured_origin_is_not_followed(
    start_sidecar: StartSidecar, files: FileServer, reload_server: ReloadServer
) -> None:
    elsewhere = ReloadServer()
    try:
        target = elsewhere.url("/ok")
        url = reload_server.url(f"/redirect?to={target}&code=302")
        r = start_sidecar(game=None, **request_mode(url))
        (r.file_dir / "index.html").write_text("previous\n")
        status, body = r.api.post({"version": "v2", "url": files.add("o/index.html", "new\n")})
        assert status == 503, body
        assert "off the configured origin" in body["message"]
        assert elsewhere.calls == [], "the other server was never called"
        assert len(reload_server.calls) == 1, "an origin problem is not retried"
        assert (r.file_dir / "index.html").read_text() == "previous\n"
    finally:
        elsewhere.stop()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_on_the_origin_keeps_the_method_and_body(
    start_sidecar: StartSidecar, files: FileServer, reload_server: ReloadServer, code: int
) -> None:
    url = reload_server.url(f"/redirect?to=/ok&code={code}")
    r = start_sidecar(game=None, **request_mode(url))
    status, body = r.api.post({"version": "v2", "url": files.add(f"r{code}/index.html", "n\n")})
    assert status == 200, body
    (first, second) = reload_server.calls
    assert first[0] == second[0] == "POST"
    assert second[1] == "/ok"
    assert json.loads(second[2])["version"] == "v2"


def test_a_reload_redirect_loop_ends(
    start_sidecar: StartSidecar, files: FileServer, reload_server: ReloadServer
) -> None:
    url = reload_server.url("/loop")
    r = start_sidecar(game=None, **request_mode(url, retries=0))
    status, body = r.api.post({"version": "v2", "url": files.add("l/index.html", "n\n")})
    assert status == 503, body
    assert "redirects" in body["message"]


@pytest.mark.parametrize(
    ("request_config", "problem"),
    [
        ({"url": "http://169.254.169.254/reload"}, "request.url: refused: 169.254.169.254 is a"),
        ({"address": "100.100.100.200", "port": 80}, "request.address: refused"),
        ({"url": "http://127.0.0.1/r", "headers": {"X-Token": "a\r\nX-Evil: 1"}},
         "request.headers.X-Token: the value of X-Token contains the control character '\\r'"),
        ({"url": "http://127.0.0.1/r", "headers": {"Bad Name": "x"}},
         "request.headers.Bad Name: 'Bad Name' is not a header name"),
        ({"url": "http://127.0.0.1/r", "headers": {"Content-Length": "5"}},
         "request.headers.Content-Length: Content-Length is set by kidecar"),
        ({"address": "127.0.0.1"}, "request.port: required with `address`"),
        ({"address": "http://127.0.0.1", "port": 80}, "request.address: 'http://127.0.0.1' must"),
        ({"address": "127.0.0.1", "port": 70000}, "request.port: must be 1-65535"),
        ({"url": "http://127.0.0.1/r", "address": "127.0.0.1", "port": 80}, "not both"),
        ({}, "request.url: required"),
    ],
)  # fmt: skip
def test_bad_request_configs_are_config_errors(
    request_config: dict[str, Any], problem: str
) -> None:
    config = {
        "plugins": [
            {
                "name": "hot_update",
                "config": {"loadPatchType": "request", "fileDir": "/tmp/kd-test-downloads",
                           "request": request_config},
            }
        ]
    }  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_parsed(config, Plugins.load({}), {}, lenient=False)
    assert problem in str(caught.value), caught.value


GO_REQUEST_CONFIG = """\
# The Go predecessor's request mode: its Request struct has exactly `address` (string) and
# `port` (int) (github.com/magicsong/kidecar, pkg/plugins/hot_update/plugin.go).
plugins:
  - name: hot_update
    config:
      loadPatchType: request
      fileDir: {file_dir}
      request:
        address: 127.0.0.1
        port: {port}
      storageConfig:
        type: InKube
        inKube:
          annotationKey: sidecar.vke.volcengine.com/hot-update-result
"""


def test_a_go_request_config_loads_and_calls_address_and_port(
    start_sidecar: StartSidecar, files: FileServer, tmp_path: Path
) -> None:
    port = free_port()
    file_dir = tmp_path / "downloads"
    text = GO_REQUEST_CONFIG.format(file_dir=file_dir, port=port)
    plugin_config = parse_yaml(text)["plugins"][0]["config"]
    loaded = load_parsed(parse_yaml(text), Plugins.load({}), {}, lenient=False)
    assert str(loaded.plugins[0].config.request.endpoint) == f"http://127.0.0.1:{port}/"
    game = Game(tmp_path, file_dir / "index.html", http_port=port).start()
    try:
        extra = {k: v for k, v in plugin_config.items() if k not in ("fileDir", "storageConfig")}
        r = start_sidecar(game=None, file_dir=file_dir, **extra)
        for version in ("v2024.01.15.1", "v1.2.3.4"):  # Go accepted any dot-separated numbers
            status, body = r.api.post(
                {"version": version, "url": files.add("g/index.html", version)}
            )
            assert status == 200, body
            game.wait_loaded(version)
        calls = game.report()["requests"]
        assert [c["path"] for c in calls] == ["/", "/"]
        assert json.loads(calls[-1]["body"])["version"] == "v1.2.3.4"
        wait_until(lambda: r.annotation() == "v1.2.3.4: Update success", 10, "the annotation")
    finally:
        game.stop()


def test_the_go_request_config_passes_check_config(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "config.yaml"
    path.write_text(GO_REQUEST_CONFIG.format(file_dir=tmp_path / "d", port=8080))
    out = subprocess.run(
        [sys.executable, "-m", "kidecar_core", "check-config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(path.read_text())["plugins"][0]["config"]["request"]["port"] == 8080


@pytest.mark.parametrize(
    ("address", "endpoint"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080/"),
        ("localhost", "http://localhost:8080/"),
        ("::1", "http://[::1]:8080/"),
        ("[::1]", "http://[::1]:8080/"),
        ("game.default.svc.cluster.local", "http://game.default.svc.cluster.local:8080/"),
    ],
)
def test_go_address_and_port_name_the_endpoint(address: str, endpoint: str) -> None:
    from kidecar_plugins.hot_update.config import RequestConfig

    assert str(RequestConfig(address=address, port=8080).endpoint) == endpoint
