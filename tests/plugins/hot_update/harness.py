"""Test helpers: the stand-in game process, a hot_update config, and an HTTP client for the API."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.plugins.hot_update.fileserver import wait_until

GAME_SCRIPT = Path(__file__).resolve().parent / "game.py"


class Game:
    """The game script as a real process; ``title`` is its (nginx-style) process title."""

    def __init__(
        self,
        workdir: Path,
        file: Path,
        *,
        title: str | None = None,
        http_port: int | None = None,
        fail_reload: bool = False,
        handler_delay: float = 0.0,
        detached: bool = False,
    ) -> None:
        self.file = file
        self.detached = detached
        self.report_path = workdir / f"report-{secrets.token_hex(3)}.json"
        self.title = title or f"game: master process {secrets.token_hex(4)}"
        self.argv = [
            sys.executable, str(GAME_SCRIPT), "--file", str(file),
            "--report", str(self.report_path), "--title", self.title,
        ]  # fmt: skip
        if http_port is not None:
            self.argv += ["--http-port", str(http_port)]
        if fail_reload:
            self.argv.append("--fail-reload")
        if handler_delay:
            self.argv += ["--handler-delay", str(handler_delay)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_ready: bool = True) -> Game:
        if self.detached:
            # Not a child of the test process: the tests that run the notifier in-process play
            # the sidecar, whose own children are never signalled.
            subprocess.run(["sh", "-c", '"$@" >/dev/null 2>&1 &', "sh", *self.argv], check=True)
        else:
            self.proc = subprocess.Popen(self.argv)
        wait_until(lambda: self.report_path.exists(), 10, "the game to start")
        if wait_ready:
            wait_until(lambda: self.report().get("ready"), 10, "the game's SIGHUP handler")
        return self

    def report(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.report_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data

    def signals(self) -> list[str]:
        return list(self.report().get("signals", []))

    @property
    def pid(self) -> int:
        return int(self.proc.pid if self.proc is not None else self.report()["pid"])

    @property
    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{self.pid}/status").read_text().find("State:\tZ") < 0

    def wait_loaded(self, content: str, timeout: float = 10.0) -> None:
        wait_until(
            lambda: self.report().get("loaded") == content, timeout, f"game to load {content!r}"
        )

    def stop(self) -> None:
        if self.proc is None and self.report_path.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            wait_until(lambda: not self.alive, 15, "the game to exit")
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def hot_update_config(
    file_dir: Path,
    port: int,
    *,
    process_name: str | None = None,
    storage: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """A kidecar config with the hot_update plugin (signal mode unless ``extra`` says else)."""
    config: dict[str, Any] = {
        "fileDir": str(file_dir),
        "listen": f"127.0.0.1:{port}",
    }
    if process_name is not None:
        config["loadPatchType"] = "signal"
        config["signal"] = {"processName": process_name, "signalName": "SIGHUP"}
    if storage:
        config["storageConfig"] = {
            "type": "InKube",
            "inKube": {"annotationKey": "sidecar.vke.volcengine.com/hot-update-result"},
        }
    config.update(extra)
    return {"plugins": [{"name": "hot_update", "config": config}]}


ANNOTATION = "sidecar.vke.volcengine.com/hot-update-result"


class Api:
    """A client of the hot-update API on ``127.0.0.1:port``."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}/hot-update"
        self.token = token

    def post(
        self,
        fields: Mapping[str, str] | None = None,
        *,
        query: Mapping[str, str] | None = None,
        json_body: Any = None,
        raw: tuple[str, bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = "default",
        timeout: float = 30.0,
    ) -> tuple[int, dict[str, Any]]:
        """POST as ``curl -d`` does (form fields), or with a query / JSON / raw body."""
        url = self.base + ("?" + urllib.parse.urlencode(query) if query else "")
        hdrs = dict(headers or {})
        data: bytes | None = None
        if fields is not None:
            data = urllib.parse.urlencode(fields).encode()
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif json_body is not None:
            data = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif raw is not None:
            hdrs["Content-Type"], data = raw
        return self._send("POST", url, data, hdrs, token, timeout)

    def get(self, token: str | None = "default") -> tuple[int, dict[str, Any]]:
        return self._send("GET", self.base, None, {}, token, 10)

    def _send(
        self,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, str],
        token: str | None,
        timeout: float,
    ) -> tuple[int, dict[str, Any]]:
        bearer = self.token if token == "default" else token
        if bearer is not None:
            headers.setdefault("Authorization", f"Bearer {bearer}")
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = e.read()
            e.close()
            return e.code, json.loads(body)
