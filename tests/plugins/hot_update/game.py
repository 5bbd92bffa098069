"""A stand-in game server for the hot_update tests (run as a real process).

    python game.py --file PATH --report PATH [--title TEXT] [--http-port N] [--fail-reload]
                   [--handler-delay SECONDS]

It loads ``--file`` at start and again on every SIGHUP (or ``POST /reload`` with
``--http-port``), and after each event rewrites the JSON report ``--report``::

    {"pid": ..., "loaded": <file content or null>, "loads": n, "signals": ["SIGHUP", ...],
     "requests": [<request bodies>]}

SIGUSR1/SIGUSR2 are recorded too, so a test can assert that no signal at all arrived.
``--title`` rewrites the process title the way nginx does (``nginx: master process nginx``):
the argv area is overwritten and padded with NULs. ``--handler-delay`` installs the SIGHUP
handler only after that many seconds, like a game that is still starting. ``--fail-reload``
makes the reload endpoint answer 500.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

state: dict[str, Any] = {"pid": os.getpid(), "loaded": None, "loads": 0, "signals": [],
                         "requests": []}  # fmt: skip
lock = threading.RLock()


def set_title(title: str) -> None:
    """Overwrite the argv area (from /proc/self/stat) with ``title`` and NUL padding."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48 and 49)
    data = title.encode()[: end - start - 1]
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(start)
        mem.write(data + b"\0" * (end - start - len(data)))


def write_report(report: Path) -> None:
    tmp = report.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, report)


def load(path: Path, report: Path) -> None:
    with lock:
        try:
            state["loaded"] = path.read_text()
        except FileNotFoundError:
            state["loaded"] = None
        state["loads"] += 1
        write_report(report)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--title")
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--fail-reload", action="store_true")
    parser.add_argument("--handler-delay", type=float, default=0.0)
    args = parser.parse_args()
    if args.title:
        set_title(args.title)

    def on_signal(signum: int, _: FrameType | None) -> None:
        with lock:
            state["signals"].append(signal.Signals(signum).name)
        if signum == signal.SIGHUP:
            load(args.file, args.report)
        else:
            with lock:
                write_report(args.report)

    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, on_signal)
    if args.http_port:
        serve(args.http_port, args.file, args.report, args.fail_reload)
    load(args.file, args.report)
    if args.handler_delay:
        time.sleep(args.handler_delay)
    signal.signal(signal.SIGHUP, on_signal)
    with lock:
        state["ready"] = True
        write_report(args.report)
    while True:
        time.sleep(3600)


class QuietHTTPServer(ThreadingHTTPServer):
    """Clients that hang up (a sidecar that gave up or stopped) are not errors worth printing."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


def serve(port: int, file: Path, report: Path, fail: bool) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            with lock:
                state["requests"].append({"method": "POST", "path": self.path, "body": body})
            if fail:
                self.send_response(500)
                self.end_headers()
                with lock:
                    write_report(report)
                return
            load(file, report)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"loaded": state["loaded"]}).encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = QuietHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
