"""A real TCP "game server" on 127.0.0.1 whose behaviour tests control.

``GamePort`` listens in a thread of its own (so the code under test, running on an event loop,
talks to a real socket).  It can accept silently, answer a ping (after a delay), answer wrongly,
and go down and come back up on the same port.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from typing import Any

_IDLE = 5.0
"""Seconds a connection may stay idle before the server drops it (tests never need more)."""


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(_IDLE)
        game = self.server.game
        game._count()
        try:
            if game.reply is not None:
                if game.wait_for is not None:
                    received = b""
                    while game.wait_for not in received:
                        chunk = conn.recv(1024)
                        if not chunk:
                            return
                        received += chunk
                    game.received.append(received)
                if game.delay:
                    game._stopping.wait(game.delay)
                conn.sendall(game.reply)
                if game.close_after_reply:
                    return
            while conn.recv(1024):  # until the client closes
                pass
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    game: GamePort

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer is normal for a probe target


class GamePort:
    """A TCP port with a configurable answer.

    * ``reply=None``: accept and say nothing (a port that is "just open");
    * ``reply=b"PONG"``, ``wait_for=b"PING"``: answer after reading the ping;
    * ``delay``: seconds before answering (a slow or hanging game);
    * ``close_after_reply``: close the connection after answering.
    """

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.reply: bytes | None = None
        self.wait_for: bytes | None = None
        self.delay = 0.0
        self.close_after_reply = False
        self.received: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _count(self) -> None:
        with self._lock:
            self.connections += 1

    def up(self) -> GamePort:
        """Start listening (again, on the same port after :meth:`down`)."""
        self._stopping.clear()
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.game = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening: new connections are refused."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def wait_for_connections(self, n: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.connections < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.connections} connection(s), expected {n}")
            time.sleep(0.01)

    def __enter__(self) -> GamePort:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
