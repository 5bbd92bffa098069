"""A game process that reports its state over HTTP, for the probing fault tests (run as a process).

    python stategame.py --port N --state-file PATH

``GET /state`` answers ``{"data": {"state": <the content of PATH, trimmed>}}``; the file is read
on every request, so a test changes the game's state by rewriting it. Killed and restarted on
the same port, it plays a game process that crashed and came back.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-file", type=Path, required=True)
    args = parser.parse_args()
    state_file: Path = args.state_file

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path != "/state":
                self.send_error(404)
                return
            body = json.dumps({"data": {"state": state_file.read_text().strip()}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
