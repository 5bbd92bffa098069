"""A small client of kidecar's game API, for game servers written in Python.

Standard library only: copy this one file into a game that does not install kidecar.

    from kidecar_plugins.game_api.client import GameApiClient

    api = GameApiClient()                       # http://127.0.0.1:5001, or $KIDECAR_GAME_API
    print(api.gameserver().ops_state)           # "None"
    api.set_ops_state("Allocated")              # a player joined
    api.set_label("game.kidecar.io/map", "dust")
    for gs in api.watch():                      # the GameServer now, then each change
        if gs.ops_state == "Kill":
            break

Every call raises :class:`GameApiError` (with the API's ``status``, ``reason`` and ``message``)
when the sidecar refuses it, and :class:`GameApiUnreachable` (an :class:`OSError`) when it
cannot be reached. Writes are queued
by the sidecar (HTTP 202) and reach the GameServer within about half a second; ``watch()`` shows
them when they have.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_URL = "http://127.0.0.1:5001"
"""Where the game API listens by default (``listen`` of the plugin's config)."""


@dataclass(frozen=True)
class GameServer:
    """The GameServer as ``GET /v1/gameserver`` answers it.

    ``ops_state`` is ``spec.opsState`` (``None``, ``WaitToBeDeleted``, ``Allocated``,
    ``Maintaining``, ``Kill`` or a custom string); the priorities are OKG's int-or-string
    values; ``status`` is the object's ``status`` as OKG keeps it (``currentState``,
    ``networkStatus``, ...). Fields the object does not set are ``None``.
    """

    name: str
    namespace: str
    resource_version: str | None
    ops_state: str | None
    update_priority: int | str | None
    deletion_priority: int | str | None
    network_disabled: bool | None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GameServer:
        """Build one from the API's JSON object."""
        return cls(
            name=data["name"],
            namespace=data["namespace"],
            resource_version=data.get("resourceVersion"),
            ops_state=data.get("opsState"),
            update_priority=data.get("updatePriority"),
            deletion_priority=data.get("deletionPriority"),
            network_disabled=data.get("networkDisabled"),
            labels=dict(data.get("labels") or {}),
            annotations=dict(data.get("annotations") or {}),
            status=dict(data.get("status") or {}),
        )


class GameApiError(Exception):
    """The sidecar refused a call: ``status`` is the HTTP status (400 bad value, 401/403 token
    or key outside the allowed prefixes, 404 no GameServer yet, 409 a human's opsState holds,
    503 not now), ``reason`` its short name and ``message`` the explanation."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class GameApiUnreachable(ConnectionError):
    """The sidecar's game API does not answer at ``url`` (not started yet, stopped, or
    ``game_api`` not in its config): ``reason`` is the socket's error. Retry after a while."""

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(
            f"cannot reach kidecar's game API at {url} ({reason}): is the sidecar running with "
            "the game_api plugin listening there? (set $KIDECAR_GAME_API to its address)"
        )
        self.url = url
        self.reason = reason


def _api_error(status: int, reason: str, raw: bytes) -> GameApiError:
    """The error of an answer: the API's JSON (``reason``, ``message``) or the raw text."""
    try:
        data = json.loads(raw)
        return GameApiError(status, str(data["reason"]), str(data["message"]))
    except (ValueError, KeyError, TypeError):
        return GameApiError(status, reason, raw.decode(errors="replace"))


class GameApiClient:
    """Calls the game API at ``url`` (default ``$KIDECAR_GAME_API`` or :data:`DEFAULT_URL`),
    with ``token`` as bearer token when the plugin requires one (default
    ``$KIDECAR_GAME_API_TOKEN``). ``timeout`` (seconds) bounds each call but ``watch()``'s
    waiting for changes."""

    def __init__(
        self, url: str | None = None, token: str | None = None, timeout: float = 5.0
    ) -> None:
        self.url = (url or os.environ.get("KIDECAR_GAME_API") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("KIDECAR_GAME_API_TOKEN")
        self.timeout = timeout

    # -- reading ----------------------------------------------------------------------------

    def gameserver(self) -> GameServer:
        """The GameServer now (as last seen by the sidecar, at most a second old)."""
        return GameServer.from_json(self._call("GET", "/v1/gameserver", None))

    def watch(self) -> Iterator[GameServer]:
        """The GameServer now, then again after each change, until the sidecar stops (the
        iterator then ends) or the caller stops iterating."""
        request = self._request("GET", "/v1/gameserver/watch", None)
        with self._open(request, timeout=None) as response:
            for line in response:
                if line.strip():
                    yield GameServer.from_json(json.loads(line))

    # -- writing ----------------------------------------------------------------------------

    def patch(
        self,
        *,
        ops_state: str | None = None,
        update_priority: int | None = None,
        deletion_priority: int | None = None,
        network_disabled: bool | None = None,
    ) -> dict[str, Any]:
        """Queue a change of the GameServer's spec (only the arguments given); returns the
        API's answer (``{"status": "queued", "target", "changes"}``). ``GameApiError`` 409 while
        a human's ``Maintaining``/``Kill`` holds opsState, 400 for a value OKG cannot use."""
        body = {
            key: value
            for key, value in (
                ("opsState", ops_state),
                ("updatePriority", update_priority),
                ("deletionPriority", deletion_priority),
                ("networkDisabled", network_disabled),
            )
            if value is not None
        }
        return self._call("PATCH", "/v1/gameserver", body)

    def set_ops_state(self, state: str) -> dict[str, Any]:
        """``patch(ops_state=state)``: e.g. ``Allocated`` when players are on, ``WaitToBeDeleted``
        when the server may go on scale-in, ``None`` when idle."""
        return self.patch(ops_state=state)

    def set_label(self, key: str, value: str) -> dict[str, Any]:
        """Queue setting a label (key under the plugin's ``metadataPrefixes``)."""
        return self._call("PUT", self._metadata("labels", key), {"value": value})

    def delete_label(self, key: str) -> dict[str, Any]:
        return self._call("DELETE", self._metadata("labels", key), None)

    def set_annotation(self, key: str, value: str) -> dict[str, Any]:
        """Queue setting an annotation (key under the plugin's ``metadataPrefixes``)."""
        return self._call("PUT", self._metadata("annotations", key), {"value": value})

    def delete_annotation(self, key: str) -> dict[str, Any]:
        return self._call("DELETE", self._metadata("annotations", key), None)

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _metadata(kind: str, key: str) -> str:
        return f"/v1/metadata/{kind}/{urllib.parse.quote(key, safe='/')}"

    def _request(self, method: str, path: str, body: Any) -> urllib.request.Request:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return urllib.request.Request(self.url + path, data, headers, method=method)

    def _open(self, request: urllib.request.Request, timeout: float | None) -> Any:
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            with e:
                raw = e.read()
            raise _api_error(e.code, str(e.reason), raw) from None
        except urllib.error.URLError as e:
            raise GameApiUnreachable(self.url, e.reason) from e

    def _call(self, method: str, path: str, body: Any) -> dict[str, Any]:
        with self._open(self._request(method, path, body), self.timeout) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
