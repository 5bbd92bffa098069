"""Run ``kidecar run`` as a real subprocess, the way a pod runs it, and talk to it."""

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sidecar:
    """A ``kidecar run`` subprocess with its config, state file and log in ``workdir``.

    ``local_state`` (default) runs in local mode; pass ``kubeconfig`` to run against a cluster.
    """

    def __init__(
        self,
        workdir: Path,
        config: Mapping[str, Any] | str,
        *,
        kubeconfig: str | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: list[str] | None = None,
        pod_name: str = "gs-0",
        namespace: str = "default",
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "config.yaml"
        text = config if isinstance(config, str) else yaml.safe_dump(dict(config))
        self.config_path.write_text(text)
        self.state_path = self.workdir / "state.json"
        self.log_path = self.workdir / "kidecar.log"
        self.admin_port = free_port()
        self.kubeconfig = kubeconfig
        self.env = {
            **os.environ,
            "POD_NAME": pod_name,
            "POD_NAMESPACE": namespace,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def argv(self) -> list[str]:
        """The command line of ``kidecar run`` (subclasses may wrap it)."""
        where = (
            ["--kubeconfig", self.kubeconfig]
            if self.kubeconfig
            else ["--local-state", str(self.state_path)]
        )
        return [
            sys.executable, "-m", "kidecar_core", "run",
            "--config", str(self.config_path),
            "--admin-listen", f"127.0.0.1:{self.admin_port}",
            "--log-format", "text",
            *where, *self.extra_args,
        ]  # fmt: skip

    def start(self, *, wait_ready: bool = False, timeout: float = 20.0) -> Sidecar:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv(), stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir
        )
        self.wait_for(lambda: self.get("/healthz")[0] == 200, timeout, "kidecar to answer /healthz")
        if wait_ready:
            self.wait_for(lambda: self.get("/readyz")[0] == 200, timeout, "kidecar to be ready")
        return self

    def get(self, path: str) -> tuple[int, str]:
        """GET on the admin server: (status, body); (0, error) when it does not answer."""
        try:
            with urllib.request.urlopen(self.admin + path, timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            body = e.read().decode()
            e.close()
            return e.code, body
        except OSError as e:
            return 0, str(e)

    def readyz(self) -> dict[str, Any]:
        status, body = self.get("/readyz")
        data: dict[str, Any] = json.loads(body) if status else {}
        return data

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The value of one sample on /metrics (``None`` when absent)."""
        _, body = self.get("/metrics")
        want = labels or {}
        for line in body.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            got = dict(
                part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part
            )
            got = {k: v.strip('"') for k, v in got.items()}
            if all(got.get(k) == v for k, v in want.items()):
                return float(value)
        return None

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_path.read_text())
        return data

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
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
                pass
            time.sleep(0.05)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}:\n{self.log()[-4000:]}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.stop()
