"""Stand-ins for the game: its HTTP state endpoints, and a process that reloads on SIGHUP.

``StateGame`` runs in the benchmark's process (a stdlib threading HTTP server on 127.0.0.1):
``GET /state/<i>`` answers ``{"state": "<state of i>", "players": 3}`` with keep-alive, as a game
server would; the benchmark changes the states and reads how many probes arrived.

Run as a script, this module is the game *process* of the hot-update figures::

    python bench/game.py signal --log PATH

It installs a SIGHUP handler, writes ``ready`` to PATH, and on each SIGHUP appends the
CLOCK_MONOTONIC time at which the handler ran (seconds, one line per signal). CLOCK_MONOTONIC
is system-wide on Linux, so the benchmark compares it with its own ``time.monotonic()``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class StateGame:
    """``n`` state endpoints; use as a context manager."""

    def __init__(self, n: int, state: str = "None") -> None:
        self._lock = threading.Lock()
        self._states = [state] * n
        self._counts = [0] * n
        self._answered = [state] * n
        self._first_answers: list[list[tuple[float, str]]] = [[] for _ in range(n)]
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="state-game", daemon=True
        )

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/state/{i}"

    @property
    def urls(self) -> list[str]:
        return [self.url(i) for i in range(len(self._states))]

    def set(self, i: int, state: str) -> None:
        with self._lock:
            self._states[i] = state
            self._first_answers[i] = [a for a in self._first_answers[i] if a[1] != state]

    def get(self, i: int) -> str:
        with self._lock:
            return self._states[i]

    def count(self) -> int:
        """Requests answered so far, all endpoints."""
        with self._lock:
            return sum(self._counts)

    def first_answer(self, i: int, state: str) -> float | None:
        """``time.monotonic()`` at which endpoint ``i`` finished writing its first answer with
        ``state`` since that state was last set (``None``: not answered yet)."""
        with self._lock:
            for at, answered in reversed(self._first_answers[i]):
                if answered == state:
                    return at
        return None

    def _answered_with(self, i: int, state: str) -> None:
        at = time.monotonic()
        with self._lock:
            if self._answered[i] != state:
                self._answered[i] = state
                self._first_answers[i].append((at, state))

    def __enter__(self) -> StateGame:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        game = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def do_GET(self) -> None:
                try:
                    i = int(self.path.rsplit("/", 1)[1])
                    with game._lock:
                        state = game._states[i]
                        game._counts[i] += 1
                except (ValueError, IndexError):
                    self.send_error(404)
                    return
                body = json.dumps({"state": state, "players": 3}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                game._answered_with(i, state)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def signal_game_argv(python: str, log: Path) -> list[str]:
    """The command line of the game process (``processName`` is these joined by spaces)."""
    return [python, str(Path(__file__).resolve()), "signal", "--log", str(log)]


def read_signal_times(log: Path) -> list[float]:
    """CLOCK_MONOTONIC times of the SIGHUPs the game received so far."""
    try:
        lines = log.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [float(line) for line in lines[1:] if line.strip()]


def _signal_main(log: Path) -> None:
    out = open(log, "a", buffering=1)  # noqa: SIM115 - open for the life of the process

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        out.write(f"{time.clock_gettime(time.CLOCK_MONOTONIC):.6f}\n")

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    out.write("ready\n")
    while True:
        signal.pause()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sig = sub.add_parser("signal", help="a game process that records SIGHUPs")
    sig.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    _signal_main(args.log)


if __name__ == "__main__":
    main()
