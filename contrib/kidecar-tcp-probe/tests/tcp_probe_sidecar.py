"""Run ``kidecar run --local-state`` as a real subprocess, the way a user tries a plugin locally.

A small stand-alone helper (a third-party plugin cannot rely on kidecar's own test support).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalSidecar:
    """``kidecar run`` in local mode with its config, state file and log in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        config: Mapping[str, Any],
        *,
        pod_name: str = "gs-0",
        extra_args: list[str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(dict(config)))
        self.state_path = workdir / "state.json"
        self.log_path = workdir / "kidecar.log"
        self.admin_port = free_port()
        self.env = {**os.environ, "POD_NAME": pod_name, "POD_NAMESPACE": "default"}
        self.env.pop("KUBERNETES_SERVICE_HOST", None)
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> LocalSidecar:
        cmd = [
            sys.executable, "-m", "kidecar_core", "run",
            "--config", str(self.config_path),
            "--local-state", str(self.state_path),
            "--admin-listen", f"127.0.0.1:{self.admin_port}",
            "--log-format", "text",
            *self.extra_args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir
            )
        self.wait_for(lambda: self.ready(), timeout, "kidecar to be ready")
        return self

    def get(self, path: str) -> tuple[int, str]:
        """GET on the admin server: (status, body); (0, error) when it does not answer."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.admin_port}{path}", timeout=2
            ) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            body = e.read().decode()
            e.close()
            return e.code, body
        except OSError as e:
            return 0, str(e)

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def metric(self, line_prefix: str) -> float:
        """The sum of the /metrics samples whose line starts with ``line_prefix``."""
        lines = self.get("/metrics")[1].splitlines()
        return sum(float(line.rpartition(" ")[2]) for line in lines if line.startswith(line_prefix))

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_path.read_text())
        return data

    def ops_state(self) -> str | None:
        value = self.state()["gameserver"].get("spec", {}).get("opsState")
        return None if value is None else str(value)

    def annotations(self) -> dict[str, str]:
        annotations: dict[str, str] = self.state()["pod"]["metadata"].get("annotations", {})
        return annotations

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(
        self, predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"kidecar exited with {self.proc.returncode} while waiting for {what}:\n"
                    + self.log()[-4000:]
                )
            try:
                if predicate():
                    return
            except (OSError, ValueError, KeyError):
                pass  # the state file is replaced atomically, but may not exist yet
            time.sleep(0.05)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}:\n{self.log()[-4000:]}"
        )

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> LocalSidecar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.stop()
