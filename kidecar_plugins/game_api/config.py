"""Configuration of the ``game_api`` plugin (``plugins[].config``)."""

from __future__ import annotations

from typing import Literal

import attrs

from kidecar_core import (
    BearerAuth,
    FieldError,
    field,
    is_dns1123_subdomain,
    parse_listen,
    positive,
)

DEFAULT_LISTEN = "127.0.0.1:5001"
DEFAULT_PREFIXES = ("game.kidecar.io/",)
DEFAULT_PROTECTED = ("Maintaining", "Kill")
WRITE_INTERVAL = 0.5
"""Agones' SDK server writes each kind of change at most once per 500 ms (its
``--request-rate-limit``); kidecar uses the same window per object."""
MAX_WRITE_INTERVAL = 60.0
"""A longer window holds the game's later writes back for longer than any scale-in decision
waits (OKG acts on ``opsState`` at once): a larger value is a mistake, refused."""


RESERVED_DOMAINS = ("kubernetes.io", "k8s.io", "kruise.io")
"""Key domains (and their subdomains) of Kubernetes and OpenKruise: their keys are read by the
kubelet, controllers, OKG (``game.kruise.io/network-conf``...). The game may set one only when a
prefix names it past the ``/`` (``controller.kubernetes.io/pod-deletion-cost``)."""


def reserved_domain(domain: str) -> str | None:
    """The reserved domain of :data:`RESERVED_DOMAINS` that ``domain`` is or is under."""
    for reserved in RESERVED_DOMAINS:
        if domain == reserved or domain.endswith("." + reserved):
            return reserved
    return None


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot begin a label/annotation key the game may use; ``None`` if it can.

    ``game.kidecar.io/`` (a key domain) and ``game.kidecar.io/room-`` (names starting so) are
    prefixes; the part before ``/`` must be a DNS subdomain.
    """
    if not prefix.strip():
        return "must not be empty (it would give the game every key, kubernetes.io/ included)"
    if prefix != prefix.strip():
        return "must not begin or end with white space"
    domain, slash, name = prefix.partition("/")
    if not slash:
        return None
    if "/" in name:
        return "a key has at most one '/'"
    if not is_dns1123_subdomain(domain):
        return "the part before '/' must be a DNS subdomain (lower case a-z, 0-9, '-', '.')"
    reserved = reserved_domain(domain)
    if reserved is not None and not name:
        return (
            f"would give the game every {domain}/ key, and {reserved} keys belong to "
            "Kubernetes and OpenKruise: name the key past the '/', e.g. "
            "controller.kubernetes.io/pod-deletion-cost"
        )
    return None


@attrs.frozen
class GameApiConfig:
    """The game talks to its GameServer through the sidecar, on localhost (what Agones' SDK
    server gives its games).

    ``GET /v1/gameserver`` and ``GET /v1/gameserver/watch`` (newline-delimited JSON) read it;
    ``PATCH /v1/gameserver`` sets ``opsState``, ``updatePriority``, ``deletionPriority``,
    ``networkDisabled``; ``PUT``/``DELETE /v1/metadata/labels/{key}`` and
    ``/v1/metadata/annotations/{key}`` set labels and annotations under ``metadataPrefixes``.
    Writes are coalesced and go through the same writer and guards as every result: 202 when
    queued, 409 while a human's ``Maintaining`` holds ``spec.opsState``. The API is described
    by ``kidecar_plugins/game_api/openapi.yaml``.
    """

    listen: str = field(
        default=DEFAULT_LISTEN,
        doc="Address of the game API's HTTP server, `HOST:PORT`. A non-loopback address "
        "(reachable from outside the pod) is refused unless `auth` sets a token.",
    )
    auth: BearerAuth = field(
        factory=BearerAuth,
        doc="Bearer-token authentication; every request then needs `Authorization: Bearer "
        "<token>` (401 without it, 403 with a wrong one).",
    )
    metadata_prefixes: tuple[str, ...] = field(
        key="metadataPrefixes",
        factory=lambda: DEFAULT_PREFIXES,
        doc="The game may set and delete labels and annotations whose keys start with one of "
        "these (403 otherwise). Agones forces `agones.dev/sdk-`; here the prefix is the game's "
        "to choose, e.g. `game.example.com/`. Keys of `kubernetes.io`, `k8s.io` and `kruise.io` "
        "(and their subdomains) need an entry that names the key past the `/`, e.g. "
        "`controller.kubernetes.io/pod-deletion-cost`.",
    )
    metadata_target: Literal["gameserver", "pod"] = field(
        key="metadataTarget",
        default="gameserver",
        doc="Where `PUT`/`DELETE /v1/metadata/...` write: the GameServer's labels and "
        "annotations, or the Pod's (for label selectors, or "
        "`controller.kubernetes.io/pod-deletion-cost` with that key in `metadataPrefixes`).",
    )
    protected_ops_states: tuple[str, ...] = field(
        key="protectedOpsStates",
        factory=lambda: DEFAULT_PROTECTED,
        doc="A `spec.opsState` set by someone else (a human, a controller) that the game cannot "
        "change: `PATCH` answers 409 while it holds. `[]` lets the game change any opsState.",
    )
    write_interval_seconds: float = field(
        key="writeIntervalSeconds",
        default=WRITE_INTERVAL,
        validator=positive,
        doc="Writes to one object are coalesced: at most one write per object per interval (the "
        "first at once, later ones at the end of the interval, the newest value of each field). "
        "Seconds, at most 60.",
    )

    def __attrs_post_init__(self) -> None:
        if not parse_listen(self.listen).loopback and not self.auth.configured:
            raise FieldError(
                "listen",
                f"{self.listen!r} is reachable from outside the pod: set auth.tokenFile or "
                "auth.tokenEnv, or listen on 127.0.0.1",
            )
        for i, prefix in enumerate(self.metadata_prefixes):
            problem = prefix_problem(prefix)
            if problem is not None:
                raise FieldError(f"metadataPrefixes[{i}]", f"{prefix!r}: {problem}")
        if self.write_interval_seconds > MAX_WRITE_INTERVAL:
            raise FieldError(
                "writeIntervalSeconds",
                f"{self.write_interval_seconds:g}: at most {MAX_WRITE_INTERVAL:g} seconds (later "
                "writes of the game wait that long; Agones waits 0.5)",
            )
        for i, state in enumerate(self.protected_ops_states):
            if not state.strip():
                raise FieldError(f"protectedOpsStates[{i}]", "must not be empty")
