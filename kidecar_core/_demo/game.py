"""The demo's game server: serves its state over HTTP and reloads a file on SIGHUP.

``python -m kidecar_core._demo.game --port P --content FILE`` answers::

    GET  /state  → {"data": {"state": "idle", "players": 0}}
    POST /state  {"state": "allocated", "players": 3}  (the demo plays the match-maker)
    GET  /loaded → {"content": "...", "reloads": N}   (what the last SIGHUP loaded)

It is deliberately tiny and dependency-free: a real game would do the same with its own stack.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Game:
    def __init__(self, content: Path) -> None:
        self.content_file = content
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {"state": "idle", "players": 0}
        self.loaded = ""
        self.reloads = 0

    def reload(self) -> None:
        """What SIGHUP does: re-read the hot-updated file."""
        try:
            text = self.content_file.read_text().strip()
        except OSError as e:
            text = f"<cannot read {self.content_file}: {e.strerror}>"
        with self.lock:
            self.loaded = text
            self.reloads += 1
        print(f"[game] SIGHUP: reloaded {self.content_file.name}: {text!r}", flush=True)


def make_handler(game: Game) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with game.lock:
                if self.path == "/state":
                    self._send(200, {"data": dict(game.state)})
                elif self.path == "/loaded":
                    self._send(200, {"content": game.loaded, "reloads": game.reloads})
                else:
                    self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/state":
                self._send(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                update = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, {"error": "invalid JSON"})
                return
            with game.lock:
                game.state.update(update)
                self._send(200, {"data": dict(game.state)})

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the demo narrates; per-request logs would drown it

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="kidecar's demo game server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--content", type=Path, required=True)
    args = parser.parse_args()
    game = Game(args.content)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(game))
    signal.signal(signal.SIGHUP, lambda *_: game.reload())
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"[game] serving its state on http://127.0.0.1:{args.port}/state", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
