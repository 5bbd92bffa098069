"""A file server for fault injection: the hot_update tests' server plus a connection that drops.

Adds to :class:`tests.plugins.hot_update.fileserver.FileServer`:

* ``/drop/<name>``: announces the whole file in ``Content-Length``, sends the first half, then
  closes the connection (a CDN node that dies mid-transfer);
* ``/bad-length/<name>`` and ``/two-lengths/<name>``: the file behind a broken header, a
  ``Content-Length`` that is no number, or two that disagree (the HTTP client's error text then
  quotes the whole URL, query and userinfo included);
* ``/v/<version>/<name>``: ``files[name]`` with the version appended, so that every version of
  the same file name has its own content (what the fuzzer applies is then identifiable on disk).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.plugins.hot_update.fileserver import FileServer


def versioned_content(name: str, version: str) -> bytes:
    """What ``/v/<version>/<name>`` serves."""
    return f"{name} at {version}\n".encode() * 64


BROKEN_LENGTHS: dict[str, Callable[[int], list[str]]] = {
    "/bad-length/": lambda size: ["abc"],
    "/two-lengths/": lambda size: [str(size), str(size + 10)],
}
"""The ``Content-Length`` headers each broken-header route sends for a body of ``size`` bytes."""


class FaultyFileServer(FileServer):
    """:class:`FileServer` with the routes above; every other path behaves as there."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        if path.startswith("/drop/"):
            self._drop(h, self.files.get(path[len("/drop/") :], b""))
            return None
        for route, lengths in BROKEN_LENGTHS.items():
            if path.startswith(route):
                body = self.files.get(path[len(route) :], b"")
                return self._broken_length(h, body, lengths(len(body)))
        if path.startswith("/v/"):
            version, _, name = path[len("/v/") :].partition("/")
            return self._send(h, 200, versioned_content(name, version))
        return super().handle(h)

    def _broken_length(self, h: BaseHTTPRequestHandler, body: bytes, lengths: list[str]) -> None:
        h.send_response(200)
        for length in lengths:
            h.send_header("Content-Length", length)
        h.end_headers()
        h.wfile.write(body)
        h.close_connection = True

    def _drop(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body[: len(body) // 2])
        h.wfile.flush()
        self.dropped += 1
        h.close_connection = True
        # A hard close: the client sees the connection end with bytes still owed.
        with contextlib.suppress(OSError):
            h.connection.shutdown(socket.SHUT_RDWR)
