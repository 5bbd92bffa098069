"""The HTTP API: ``POST /hot-update`` and ``GET /hot-update`` (Go-compatible, JSON answers).

``POST`` takes ``version``, ``url`` and optionally ``sha256`` as form fields (``curl -d``), query
parameters or a JSON object. Checks run in this order: bearer token (401/403; first, so that a
caller without the token learns nothing about the input rules), input (400), single-flight
(409); then the update itself (403 URL policy, 413, 422, 502, 503; 200 only when the game was
notified). Every answer is JSON::

    {"status": "ok", "version": "v2", "url": ..., "sha256": ..., "file": ..., "bytes": ...,
     "message": ...}
    {"status": "error", "version": "v2", "code": 422, "reason": "checksum mismatch",
     "message": ...}
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from aiohttp import web

from kidecar_plugins.hot_update.auth import TokenSource
from kidecar_plugins.hot_update.errors import UpdateError
from kidecar_plugins.hot_update.updater import HotUpdater, UpdateRequest

log = logging.getLogger("kidecar.plugin.hot_update")

MAX_VERSION_LENGTH = 128
_IDENT = r"[0-9A-Za-z-]+"
VERSION = re.compile(rf"^v?\d+(\.\d+){{0,2}}(-{_IDENT}(\.{_IDENT})*)?(\+{_IDENT}(\.{_IDENT})*)?$")
"""``v1``, ``v1.2``, ``v1.2.3``, semver pre-release and build (``v1.2.3-rc.1+b5``); ``v`` optional.
Leading zeros are accepted (calendar versions such as ``v2024.01.15``)."""
SHA256 = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")
FIELDS = ("version", "url", "sha256")


def parse_version(value: str | None) -> str:
    if value is None or not value.strip():
        raise UpdateError(400, "bad request", "version is required (e.g. version=v2)")
    version = value.strip()
    if len(version) > MAX_VERSION_LENGTH or not VERSION.match(version):
        raise UpdateError(
            400,
            "bad request",
            f"version {version[:MAX_VERSION_LENGTH]!r} is not a version like v1, v1.2.3 or "
            "v1.2.3-rc.1",
        )
    return version


def parse_sha256(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    match = SHA256.match(value.strip())
    if not match:
        raise UpdateError(400, "bad request", "sha256 must be 64 hexadecimal characters")
    return match.group(1).lower()


def parse_update(fields: dict[str, str]) -> UpdateRequest:
    version = parse_version(fields.get("version"))
    url = fields.get("url")
    if url is None or not url.strip():
        raise UpdateError(400, "bad request", "url is required (e.g. url=http://host/v2/file)")
    return UpdateRequest.create(version, url, parse_sha256(fields.get("sha256")))


async def read_fields(request: web.Request) -> dict[str, str]:
    """``version``/``url``/``sha256`` from the query string and the body (form or JSON)."""
    fields: dict[str, str] = {}

    def put(key: str, value: Any, where: str) -> None:
        if key not in FIELDS:
            return
        if not isinstance(value, str):
            raise UpdateError(400, "bad request", f"{key} must be a string ({where})")
        if key in fields and fields[key] != value:
            raise UpdateError(400, "bad request", f"{key} is given twice with different values")
        fields[key] = value

    for key, value in request.query.items():
        put(key, value, "query parameter")
    if not request.body_exists:
        return fields
    ctype = request.content_type
    try:
        if ctype == "application/json":
            try:
                data = json.loads(await request.text())
            except ValueError as e:
                raise UpdateError(400, "bad request", f"body is not valid JSON: {e}") from None
            if not isinstance(data, dict):
                raise UpdateError(400, "bad request", "JSON body must be an object")
            for key, item in data.items():
                put(key, item, "JSON body")
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            for key, field in await read_form(request):
                put(key, field, "form field")
        elif await request.read():
            raise UpdateError(
                400,
                "bad request",
                f"unsupported Content-Type {ctype!r}: send form fields, JSON or query parameters",
            )
    except web.HTTPRequestEntityTooLarge:
        raise UpdateError(413, "request too large", "request body is too large") from None
    return fields


async def read_form(request: web.Request) -> list[tuple[str, Any]]:
    """The fields of a form body, repeated ones included; 400 when it cannot be parsed."""
    try:
        return list((await request.post()).items())
    except web.HTTPRequestEntityTooLarge:
        raise
    except Exception as e:
        # aiohttp's form parsers raise whatever they meet: ValueError (a multipart body without
        # a boundary), UnicodeDecodeError (not in its charset), LookupError (unknown charset)...
        raise UpdateError(400, "bad request", f"body is not a valid form: {e}") from None


def ok(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=200)


def failed(error: UpdateError, version: str | None) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="kidecar"'} if error.status == 401 else None
    return web.json_response(
        {
            "status": "error",
            "version": version,
            "code": error.status,
            "reason": error.reason,
            "message": error.message,
        },
        status=error.status,
        headers=headers,
    )


class HotUpdateApi:
    """The handlers, bound to one :class:`HotUpdater`."""

    def __init__(self, updater: HotUpdater, tokens: TokenSource) -> None:
        self.updater = updater
        self.tokens = tokens

    async def post(self, request: web.Request) -> web.Response:
        version: str | None = None
        try:
            self.tokens.check(request.headers.get("Authorization"))
            fields = await read_fields(request)
            version = fields.get("version")
            req = parse_update(fields)
            if self.updater.lock.locked():
                raise UpdateError(409, "busy", self.updater.busy_message())
        except UpdateError as e:
            log.info("hot update request refused (%d): %s", e.status, e.message)
            self.updater.count(e.label, "api")
            return failed(e, version)
        # No await since the check above: nobody can take the lock in between.
        try:
            async with self.updater.lock:
                body = await self.updater.apply(req, "api")
        except UpdateError as e:  # already logged and recorded by apply()
            self.updater.count(e.label, "api")
            return failed(e, version)
        self.updater.count("success", "api")
        return ok(body)

    async def get(self, request: web.Request) -> web.Response:
        try:
            self.tokens.check(request.headers.get("Authorization"))
        except UpdateError as e:
            return failed(e, None)
        return web.json_response(self.updater.status())
