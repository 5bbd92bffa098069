"""A tiny game HTTP server whose state the test sets, for sidecars' http_probe.

`GET /state/<server>` answers `<server>`'s current state as a plain-text body (200), or 404 for
a server that has none. One process-local server (a thread) stands for the game processes of
all the Pods of a test; each sidecar probes its own path. `set(server, state)` changes what the
next probe sees and returns the wall-clock time (`time.time()`) of the change.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class GameStates:
    """The state endpoint of every game server of a test, on 127.0.0.1 (a free port)."""

    def __init__(self) -> None:
        self._states: dict[str, str] = {}
        self._lock = threading.Lock()
        states, lock = self._states, self._lock

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                name = self.path.removeprefix("/state/")
                with lock:
                    state = states.get(name) if self.path.startswith("/state/") else None
                if state is None:
                    self.send_error(404)
                    return
                body = state.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, server: str) -> str:
        """The state endpoint of game server `server`."""
        return f"http://127.0.0.1:{self.port}/state/{server}"

    def set(self, server: str, state: str) -> float:
        """Make `server` report `state` from now on; return the time of the change."""
        with self._lock:
            self._states[server] = state
            return time.time()

    def get(self, server: str) -> str | None:
        """What `server` reports now (None: 404)."""
        with self._lock:
            return self._states.get(server)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> GameStates:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
