"""What the game asks to write, turned into the core's :class:`~kidecar_core.Write` s.

Each field becomes one single-leaf write to its object (the GameServer's ``spec``; the labels
and annotations of the ``metadataTarget``), handed to the :class:`~.batch.Batcher` and from
there, as a :class:`~kidecar_core.Result`, to the core's writer like every other result: desired
state, one merge patch per object, re-asserted when someone else changes it, retried while the
API server is away.  ``spec.opsState`` carries the guard of ``protectedOpsStates``; the game is
told 409 up front when that guard holds, judged by the core's own rule
(:meth:`~kidecar_core.RuntimeView.blocking_guard`).  The game's opsState is also one source of
``opsStatePrecedence`` among the probes (see ``plugin.emit``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kidecar_core import (
    Event,
    FieldNotIn,
    KidecarError,
    ObjectRef,
    PluginContext,
    Write,
    annotation_key_problem,
    annotations_size_problem,
    label_value_problem,
    qualified_name_problem,
)
from kidecar_plugins.game_api.batch import Batcher, BatcherClosed
from kidecar_plugins.game_api.config import GameApiConfig, reserved_domain
from kidecar_plugins.game_api.errors import ApiError
from kidecar_plugins.game_api.feed import ObjectFeed
from kidecar_plugins.game_api.gameserver import OPS_STATES

log = logging.getLogger("kidecar.plugin.game_api")

OKG_LABELS = "game.kruise.io/gs-"
"""Pod labels OpenKruiseGame overwrites from the GameServer's spec: never the game's."""


def field_manager(obj: Mapping[str, Any], path: tuple[str, ...]) -> str | None:
    """The manager (``managedFields[].manager``) that last wrote ``path`` of ``obj``, if the API
    server tracked it (server-side field management; not in local mode)."""
    best: tuple[str, str] | None = None
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        node: Any = entry.get("fieldsV1") or {}
        for part in path:
            node = node.get(f"f:{part}") if isinstance(node, dict) else None
        if node is None or not isinstance(entry.get("manager"), str):
            continue
        when = str(entry.get("time") or "")
        if best is None or when >= best[0]:
            best = (when, entry["manager"])
    return best[1] if best else None


def _names(prefix: str, domain: str) -> bool:
    """Whether ``prefix`` spells out ``domain`` and part of a name after it."""
    head, slash, name = prefix.partition("/")
    return bool(slash and name) and head == domain


class Writer:
    """Checks and queues the game's writes for one configured plugin."""

    def __init__(
        self,
        ctx: PluginContext,
        config: GameApiConfig,
        batcher: Batcher,
        gameserver: ObjectFeed,
        metadata: ObjectFeed,
    ) -> None:
        self.ctx = ctx
        self.config = config
        self.batcher = batcher
        self.gameserver = gameserver
        self.metadata_feed = metadata
        self.annotations: dict[str, str | None] = {}
        """The annotations the game set (``None``: removed) that the copy did not show yet at
        the last size check (then forgotten: a game naming a key per match leaks nothing)."""
        protected = tuple(config.protected_ops_states)
        # Always a guard of the field, even an empty one: the core guards every write of
        # spec.opsState that brings none (Maintaining, Kill); `protectedOpsStates: []` decides.
        self.guards = (FieldNotIn("/spec/opsState", protected),)

    # -- GameServer spec --------------------------------------------------------------------

    async def spec(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Queue ``fields`` (checked by :func:`~.gameserver.parse_spec_patch`) for the
        GameServer's ``spec``; 409 while a guard holds ``opsState``; 503 when not queueable."""
        ref = self.gameserver.ref
        if "opsState" in fields:
            await self._check_guard(fields["opsState"])
            if fields["opsState"] not in OPS_STATES and self.ctx.first_time(
                ("game_api.opsState", fields["opsState"])
            ):
                log.warning(
                    "the game sets opsState %r, which OKG does not know (it knows %s); OKG keeps "
                    "it as a custom state",
                    fields["opsState"],
                    ", ".join(OPS_STATES),
                )
        writes = [self._spec_write(ref, name, value) for name, value in fields.items()]
        self._submit(writes)
        return {"target": str(ref), "changes": dict(fields)}

    def _spec_write(self, ref: ObjectRef, name: str, value: Any) -> Write:
        source = f"{self.ctx.path} (game_api: PATCH /v1/gameserver {name})"
        if name != "opsState":
            return Write(ref, {"spec": {name: value}}, source)
        event = Event(
            "OpsStateChanged",
            f"the game set GameServer spec.opsState to {value} (through kidecar's game_api)",
        )
        return Write(ref, {"spec": {name: value}}, source, guards=self.guards, event=event)

    async def _check_guard(self, wanted: str) -> None:
        if not self.guards[0].values:
            return
        try:
            live = await self.gameserver.current()
        except KidecarError:
            return  # not known now: queued; the writer checks the guard before it writes
        if live is None:
            return
        current = (live.get("spec") or {}).get("opsState")
        if (
            current == wanted
            or self.ctx.blocking_guard(self.gameserver.ref, self.guards, live) is None
        ):
            return
        who = field_manager(live, ("spec", "opsState"))
        raise ApiError(
            409,
            f"spec.opsState is {current!r}, set by {who or 'someone else'} (not by kidecar): the "
            f"game cannot change it while it is one of {', '.join(self.guards[0].values)} "
            f"(protectedOpsStates of {self.ctx.config_path('protectedOpsStates')}); nothing "
            "was queued",
        )

    # -- labels and annotations -------------------------------------------------------------

    def check_key(self, kind: str, key: str) -> None:
        """403 for a key outside ``metadataPrefixes`` (or an OKG-owned label), 400 for a key the
        API server would refuse."""
        prefixes = self.config.metadata_prefixes
        if not key.startswith(prefixes):
            raise ApiError(
                403,
                f"{kind[:-1]} key {key[:300]!r} is not under metadataPrefixes "
                f"({', '.join(prefixes) or 'none configured'})",
            )
        if kind == "labels" and key.startswith(OKG_LABELS):
            raise ApiError(403, f"{key!r}: OpenKruiseGame owns {OKG_LABELS}* labels")
        domain, slash, _ = key.partition("/")
        reserved = reserved_domain(domain.lower()) if slash else None
        if reserved is not None and not any(
            _names(p, domain) for p in prefixes if key.startswith(p)
        ):
            raise ApiError(
                403,
                f"{kind[:-1]} key {key[:300]!r} is under {reserved}, whose keys belong to "
                "Kubernetes and OpenKruise: a metadataPrefixes entry must name it past the '/' "
                f"(e.g. {domain}/{key.partition('/')[2][:63]})",
            )
        check = qualified_name_problem if kind == "labels" else annotation_key_problem
        problem = check(key)
        if problem is not None:
            raise ApiError(400, f"invalid {kind[:-1]} key: {problem}")

    async def metadata(self, kind: str, key: str, value: str | None) -> dict[str, Any]:
        """Queue setting (``value``) or deleting (``None``) label/annotation ``key`` on the
        ``metadataTarget``; the key and value checked as the API server checks them."""
        self.check_key(kind, key)
        if value is not None and kind == "labels":
            problem = label_value_problem(value)
            if problem is not None:
                raise ApiError(400, f"invalid label value: {problem}")
        elif value is not None:
            await self._check_annotations_size(key, value)
        ref = self.metadata_feed.ref
        source = f"{self.ctx.path} (game_api: {'PUT' if value is not None else 'DELETE'} {kind})"
        self._submit([Write(ref, {"metadata": {kind: {key: value}}}, source)])
        if kind == "annotations":
            self.annotations[key] = value
        return {"target": str(ref), "changes": {kind: {key: value}}}

    async def _check_annotations_size(self, key: str, value: str) -> None:
        try:
            live = await self.metadata_feed.current()
        except KidecarError:
            live = None  # not known now: the API server has the last word (422, logged)
        ref = self.metadata_feed.ref
        annotations = dict(((live or {}).get("metadata") or {}).get("annotations") or {})
        if live is not None:  # what the copy shows already needs no remembering
            for landed in [k for k, v in self.annotations.items() if annotations.get(k) == v]:
                del self.annotations[landed]
        # What the game set before may not be in the copy yet; the writer makes it so.
        annotations.update(self.annotations)
        annotations[key] = value
        problem = annotations_size_problem({k: v for k, v in annotations.items() if v is not None})
        if problem is not None:
            raise ApiError(400, f"{ref}: with {key!r}, the {problem}")

    # -- queueing ---------------------------------------------------------------------------

    def _submit(self, writes: list[Write]) -> None:
        try:
            self.batcher.submit(writes)
        except BatcherClosed as e:
            raise ApiError(503, f"the write cannot be queued: {e}", retry_after=1) from None
