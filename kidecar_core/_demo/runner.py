"""``kidecar demo``: a game, a file server and the sidecar in local mode, narrated.

Everything runs on 127.0.0.1 in a temporary directory and is cleaned up on exit or Ctrl-C:

1. a demo game (:mod:`kidecar_core._demo.game`) that serves its state over HTTP and reloads a file
   on SIGHUP;
2. a file server with two versions of that file;
3. ``kidecar run --local-state`` with the ``http_probe`` and ``hot_update`` plugins.

The demo then plays a match-maker (the game's state goes idle → allocated → draining) and a
release engineer (two hot updates), showing the local state file after each step.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

import yaml

POD = "demo-gameserver-0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class DemoFailed(Exception):
    pass


def demo_config(game_port: int, hot_port: int, downloads: Path) -> dict[str, Any]:
    """The sidecar config of the demo: http_probe on the game, hot_update into ``downloads``."""
    policies = [
        {"state": "idle", "gameServerOpsState": "None"},
        {"state": "allocated", "gameServerOpsState": "Allocated"},
        {
            "state": "draining",
            "gameServerOpsState": "WaitToBeDeleted",
            "jsonPathConfigs": [{"jsonPath": "/spec/deletionPriority", "value": 100}],
        },
    ]
    return {
        "restartpolicy": "Always",
        "plugins": [
            {
                "name": "http_probe",
                "bootorder": 1,
                "config": {
                    "startDelaySeconds": 0,
                    "probeIntervalSeconds": 0.5,
                    "endpoints": [
                        {
                            "url": f"http://127.0.0.1:{game_port}/state",
                            "timeout": 1,
                            "jsonPathConfig": {"jsonPath": "data.state"},
                            "storageConfig": {
                                "type": "InKube",
                                "inKube": {
                                    "annotationKey": "demo.kidecar.io/game-state",
                                    "markerPolices": policies,
                                },
                            },
                        }
                    ],
                },
            },
            {
                "name": "hot_update",
                "bootorder": 0,
                "config": {
                    "loadPatchType": "signal",
                    "signal": {
                        "processName": r".* -m kidecar_core\._demo\.game .*",
                        "processNameRegex": True,
                        "signalName": "SIGHUP",
                    },
                    "fileDir": str(downloads),
                    "listen": f"127.0.0.1:{hot_port}",
                    "storageConfig": {
                        "type": "InKube",
                        "inKube": {"annotationKey": "demo.kidecar.io/hot-update-result"},
                    },
                },
            },
        ],
    }


class Demo:
    """The demo's processes and narration; ``run()`` returns the exit code."""

    def __init__(self, out: TextIO, pace: float) -> None:
        self.out = out
        self.pace = pace
        self.dir = Path(tempfile.mkdtemp(prefix="kidecar-demo-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.files: ThreadingHTTPServer | None = None
        self.game_port = free_port()
        self.hot_port = free_port()
        self.admin_port = free_port()
        self.downloads = self.dir / "downloads"
        self.state_file = self.dir / "state.json"

    # -- narration ------------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, title: str) -> None:
        time.sleep(self.pace)
        self.say(f"\n== {title}")

    def show_gameserver(self) -> None:
        state = json.loads(self.state_file.read_text())
        gs, pod = state["gameserver"], state["pod"]
        self.say(f"   state file: GameServer spec.opsState = {gs['spec'].get('opsState')!r}, "
                 f"deletionPriority = {gs['spec'].get('deletionPriority')!r}")  # fmt: skip
        for key, value in sorted(pod["metadata"].get("annotations", {}).items()):
            self.say(f"               pod annotation {key} = {value!r}")

    # -- set-up ---------------------------------------------------------------------------------

    def start(self) -> None:
        site = self.dir / "site"
        for version, text in (("v1", "level pack v1: 3 maps"), ("v2", "level pack v2: 5 maps")):
            (site / version).mkdir(parents=True)
            (site / version / "levels.txt").write_text(text + "\n")
        self.downloads.mkdir()
        self.files = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietFiles, directory=str(site)))
        threading.Thread(target=self.files.serve_forever, daemon=True).start()
        self.file_port = self.files.server_address[1]

        config = self.dir / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                demo_config(self.game_port, self.hot_port, self.downloads), sort_keys=False
            )
        )
        env = {**os.environ, "POD_NAME": POD, "POD_NAMESPACE": "demo", "PYTHONUNBUFFERED": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.game_log = (self.dir / "game.log").open("wb")
        self.sidecar_log = (self.dir / "kidecar.log").open("wb")
        game = [
            sys.executable, "-m", "kidecar_core._demo.game",
            "--port", str(self.game_port), "--content", str(self.downloads / "levels.txt"),
        ]  # fmt: skip
        sidecar = [
            sys.executable, "-m", "kidecar_core", "run", "--config", str(config),
            "--local-state", str(self.state_file), "--log-format", "text",
            "--admin-listen", f"127.0.0.1:{self.admin_port}",
        ]  # fmt: skip
        for argv, log in ((game, self.game_log), (sidecar, self.sidecar_log)):
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env))
        self.wait(lambda: self.http("GET", f"{self.admin}/readyz")[0] == 200, "kidecar ready")

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    # -- helpers --------------------------------------------------------------------------------

    def http(self, method: str, url: str, data: bytes | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None and data.startswith(b"{"):
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            with e:
                return e.code, json.loads(e.read() or b"null")
        except (OSError, ValueError) as e:
            return 0, str(e)

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise DemoFailed(f"a demo process (pid {p.pid}) exited waiting for {what}")
            with contextlib.suppress(OSError, ValueError, KeyError):
                if predicate():
                    return
            time.sleep(0.1)
        raise DemoFailed(f"timed out waiting for {what}")

    def ops_state(self) -> str:
        return str(json.loads(self.state_file.read_text())["gameserver"]["spec"]["opsState"])

    def ops_is(self, expected: str) -> bool:
        return self.ops_state() == expected

    def game_loaded(self, version: str) -> bool:
        _, loaded = self.http("GET", f"http://127.0.0.1:{self.game_port}/loaded")
        return version in str(loaded)

    def result_recorded(self, version: str) -> bool:
        pod = json.loads(self.state_file.read_text())["pod"]
        result = pod["metadata"].get("annotations", {}).get("demo.kidecar.io/hot-update-result")
        return str(result).startswith(f"{version}:")

    def set_game_state(self, state: str, players: int) -> None:
        body = json.dumps({"state": state, "players": players}).encode()
        self.http("POST", f"http://127.0.0.1:{self.game_port}/state", body)

    # -- the story ------------------------------------------------------------------------------

    def story(self) -> None:
        self.say("kidecar demo: a game server, a file server and the sidecar, all on 127.0.0.1")
        self.say(f"   working directory: {self.dir}")
        self.start()
        self.say(f"   game:    http://127.0.0.1:{self.game_port}/state (pid {self.procs[0].pid})")
        self.say(f"   sidecar: admin http://127.0.0.1:{self.admin_port}/readyz, hot update "
                 f"http://127.0.0.1:{self.hot_port}/hot-update")  # fmt: skip
        self.say(
            f"   local state file (stands in for the pod and its GameServer): {self.state_file}"
        )

        transitions = [
            ("idle", 0, "None", "The game is up and idle: http_probe reads data.state"),
            ("allocated", 8, "Allocated", "A match starts: the game says 'allocated'"),
            ("draining", 0, "WaitToBeDeleted", "The match ends: the game says 'draining'"),
        ]  # fmt: skip
        for state, players, expected, title in transitions:
            self.step(title)
            self.set_game_state(state, players)
            self.say(f"   game state -> {state!r}; waiting for spec.opsState {expected!r} ...")
            self.wait(partial(self.ops_is, expected), f"opsState {expected}")
            self.show_gameserver()
        self.say("   (OpenKruiseGame scales in WaitToBeDeleted servers first; a busy one is safe)")

        for version in ("v1", "v2"):
            self.step(f"Hot update to {version}: POST /hot-update version={version} url=...")
            url = f"http://127.0.0.1:{self.file_port}/{version}/levels.txt"
            form = urllib.parse.urlencode({"version": version, "url": url}).encode()
            status, body = self.http("POST", f"http://127.0.0.1:{self.hot_port}/hot-update", form)
            self.say(f"   HTTP {status}: {json.dumps(body)}")
            if status != 200:
                raise DemoFailed(f"hot update to {version} failed: {body}")
            self.wait(partial(self.game_loaded, version), f"the game to reload {version}")
            _, loaded = self.http("GET", f"http://127.0.0.1:{self.game_port}/loaded")
            self.say(f"   the game got SIGHUP and reloaded: {loaded['content']!r}")
            self.wait(partial(self.result_recorded, version), "the result annotation")
            self.show_gameserver()

        self.step("A bad request is refused and changes nothing")
        bad = urllib.parse.urlencode({"version": "v3", "url": "file:///etc/passwd"}).encode()
        status, body = self.http("POST", f"http://127.0.0.1:{self.hot_port}/hot-update", bad)
        self.say(f"   HTTP {status}: {json.dumps(body)}")
        _, loaded = self.http("GET", f"http://127.0.0.1:{self.game_port}/loaded")
        self.say(f"   the game still runs {loaded['content']!r}")

        self.step("Stopping (SIGTERM): kidecar flushes its writes and exits 0")
        code = self.stop_sidecar()
        self.say(f"   kidecar exited with {code}")
        if code != 0:
            raise DemoFailed(f"kidecar exited with {code}")
        self.say("\nDone. Next: `kidecar inject -f your-gameserverset.yaml --config config.yaml`"
                 " (see README).")  # fmt: skip

    def stop_sidecar(self) -> int:
        sidecar = self.procs[1]
        sidecar.send_signal(signal.SIGTERM)
        try:
            return sidecar.wait(30)
        except subprocess.TimeoutExpired:
            sidecar.kill()
            return sidecar.wait()

    def cleanup(self, keep: bool) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.files is not None:
            self.files.shutdown()
            self.files.server_close()
        for f in ("game_log", "sidecar_log"):
            handle = getattr(self, f, None)
            if handle is not None:
                handle.close()
        if keep:
            self.say(f"(logs kept in {self.dir})")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def run(self) -> int:
        failed = False
        try:
            self.story()
        except DemoFailed as e:
            failed = True
            self.say(f"\ndemo failed: {e}")
            for name in ("kidecar.log", "game.log"):
                path = self.dir / name
                if path.exists():
                    self.say(f"--- last lines of {name}:")
                    self.say("\n".join(path.read_text(errors="replace").splitlines()[-20:]))
        except KeyboardInterrupt:
            self.say("\ninterrupted; cleaning up")
            failed = True
        finally:
            self.cleanup(keep=failed)
        return 1 if failed else 0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM clean up like Ctrl-C does."""

    def handler(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(pace: float = 1.0, out: TextIO | None = None) -> int:
    with _sigterm_as_interrupt():
        return Demo(out or sys.stdout, pace).run()
