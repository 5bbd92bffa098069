"""A small stand-in game for the fleet tests and the rollout benchmark (a real process, stdlib
only: thirty of them run at once).

    python fleetgame.py --file PATH --report PATH --port N

* ``POST /reload``: (re)load ``--file`` (what hot_update's ``loadPatchType: request`` calls);
* ``GET /health``: ``{"state": "Ready"}``, or 500 while the loaded file starts with ``bad``
  (a version that breaks the game: its probe fails after the reload);
* ``--report`` (JSON, rewritten atomically after each load): ``{"pid", "loads": [contents]}``,
  every load in order, the one at start included (``null`` when the file does not exist yet).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

lock = threading.Lock()
loads: list[str | None] = []


def load(file: Path, report: Path) -> str | None:
    try:
        content: str | None = file.read_text()
    except FileNotFoundError:
        content = None
    with lock:
        loads.append(content)
        tmp = report.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "loads": loads}))
        os.replace(tmp, report)
    return content


class Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    load(args.file, args.report)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with lock:
                current = loads[-1] if loads else None
            if (current or "").startswith("bad"):
                self._answer(500, {"state": "Broken"})
            else:
                self._answer(200, {"state": "Ready"})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(200, {"loaded": load(args.file, args.report)})

        def log_message(self, *args: Any) -> None:
            pass

    Quiet(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
