"""Fixtures of the hot_update tests: a real file server, a real game process, a real sidecar."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kidecar_core.testing import Sidecar, free_port
from tests.plugins.hot_update.fileserver import FileServer
from tests.plugins.hot_update.harness import Api, Game, hot_update_config


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    server = FileServer().start()
    yield server
    server.stop()


class Running:
    """A started sidecar with its game, API client and download directory."""

    def __init__(self, sidecar: Sidecar, game: Game | None, api: Api, file_dir: Path) -> None:
        self.sidecar = sidecar
        self.game = game
        self.api = api
        self.file_dir = file_dir

    @property
    def api_port(self) -> int:
        return self.api.port

    def state(self) -> dict[str, Any]:
        return self.sidecar.state()

    def annotation(self) -> str | None:
        from tests.plugins.hot_update.harness import ANNOTATION

        try:
            annotations = self.state()["pod"]["metadata"].get("annotations") or {}
        except (FileNotFoundError, ValueError):
            return None
        value = annotations.get(ANNOTATION)
        return None if value is None else str(value)

    def listing(self) -> list[str]:
        return sorted(p.name for p in self.file_dir.iterdir())


StartSidecar = Callable[..., Running]


@pytest.fixture
def start_sidecar(tmp_path: Path) -> Iterator[StartSidecar]:
    """``start_sidecar(game=..., **config)``: a local-mode sidecar in ``tmp_path``.

    ``game=True`` starts a new game reading ``<fileDir>/index.html``; a :class:`Game` is used
    as given; ``None`` runs without a game. With ``kubeconfig`` the sidecar runs against that
    cluster as pod ``namespace/pod_name``. Everything is stopped afterwards.
    """
    started: list[Any] = []

    def start(
        game: Game | bool | None = True,
        *,
        token: str | None = None,
        file_dir: Path | None = None,
        workdir: Path | None = None,
        pod_name: str = "gs-0",
        kubeconfig: Path | None = None,
        namespace: str = "default",
        **config: Any,
    ) -> Running:
        file_dir = file_dir or tmp_path / "downloads"
        file_dir.mkdir(parents=True, exist_ok=True)
        if game is True:
            game = Game(tmp_path, file_dir / "index.html").start()
            started.append(game)
        port = int(str(config["listen"]).rsplit(":", 1)[1]) if "listen" in config else free_port()
        env = {}
        if token is not None:
            env["HOT_UPDATE_TOKEN"] = token
            config.setdefault("auth", {"tokenEnv": "HOT_UPDATE_TOKEN"})
        if isinstance(game, Game) and "request" not in config:
            config.setdefault("process_name", game.title)
        sidecar = Sidecar(
            workdir or tmp_path / f"sidecar-{secrets.token_hex(2)}",
            hot_update_config(file_dir, port, **config),
            env=env,
            pod_name=pod_name,
            namespace=namespace,
            kubeconfig=str(kubeconfig) if kubeconfig else None,
        )
        started.append(sidecar)
        sidecar.start()
        api = Api(port, token)
        sidecar.wait_for(lambda: api.get()[0] in (200, 401), 10, "the hot-update API")
        return Running(sidecar, game if isinstance(game, Game) else None, api, file_dir)

    yield start
    for thing in reversed(started):
        thing.stop()
