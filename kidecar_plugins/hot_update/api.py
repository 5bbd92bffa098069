"""The HTTP API: ``POST /hot-update`` and ``GET /hot-update`` (Go-compatible, JSON answers).

``POST`` takes ``version``, ``url`` and optionally ``sha256`` as form fields (``curl -d``), query
parameters or a JSON object. Checks run in this order: bearer token (401/403; first, so that a
caller without the token learns nothing about the input rules), input (400; 408 when the body
does not arrive within :data:`BODY_TIMEOUT`), single-flight (409); then the update itself (403
URL policy, 413, 422, 502, 503; 200 only when the game was notified).

The body is read the same way whatever its type: a field given twice with different values
(twice in a form, twice in a JSON object, or in the query and the body) is 400; a JSON body
nested deeper than :data:`MAX_JSON_DEPTH` levels is 400 before it is parsed. Refused requests
are logged on one line, at most a few per minute per kind (:class:`kidecar_core.LogBudget`).
Every answer is JSON::

    {"status": "ok", "version": "v2", "url": ..., "sha256": ..., "file": ..., "bytes": ...,
     "message": ...}
    {"status": "error", "version": "v2", "code": 422, "reason": "checksum mismatch",
     "message": ...}
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from kidecar_core import LogBudget
from kidecar_plugins.hot_update.auth import TokenSource
from kidecar_plugins.hot_update.errors import (
    BadRequest,
    Busy,
    RequestTimeout,
    TooLarge,
    UpdateError,
)
from kidecar_plugins.hot_update.updater import HotUpdater, UpdateRequest

log = logging.getLogger("kidecar.plugin.hot_update")

MAX_VERSION_LENGTH = 128
MAX_JSON_DEPTH = 32
"""Deepest nesting of a JSON body (the fields are at depth 1)."""
BODY_TIMEOUT = 10.0
"""Seconds the whole request body may take to arrive (408 after that); the body is small (the
server accepts 64 KiB), so this is generous."""
_IDENT = r"[0-9A-Za-z-]+"
VERSION = re.compile(rf"^v?[0-9]+(\.[0-9]+)*(-{_IDENT}(\.{_IDENT})*)?(\+{_IDENT}(\.{_IDENT})*)?$")
"""``v`` (optional) and any number of dot-separated numbers, as the Go API accepted (``v1``,
``v1.2.3.4``, calendar versions such as ``v2024.01.15.1``, leading zeros included), plus semver
pre-release and build (``v1.2.3-rc.1+b5``). ASCII digits only (``\\d`` would take other
scripts' digits)."""
SHA256 = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")
FIELDS = ("version", "url", "sha256")


def parse_version(value: str | None) -> str:
    if value is None or not value.strip():
        raise BadRequest("bad request", "version is required (e.g. version=v2)")
    version = value.strip()
    if len(version) > MAX_VERSION_LENGTH or not VERSION.match(version):
        raise BadRequest(
            "bad request",
            f"version {version[:MAX_VERSION_LENGTH]!r} is not a version like v1, v1.2.3, "
            "v2024.01.15.1 or v1.2.3-rc.1",
        )
    return version


def parse_sha256(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    match = SHA256.match(value.strip())
    if not match:
        raise BadRequest("bad request", "sha256 must be 64 hexadecimal characters")
    return match.group(1).lower()


def parse_update(fields: dict[str, str]) -> UpdateRequest:
    version = parse_version(fields.get("version"))
    url = fields.get("url")
    if url is None or not url.strip():
        raise BadRequest("bad request", "url is required (e.g. url=http://host/v2/file)")
    return UpdateRequest.create(version, url, parse_sha256(fields.get("sha256")))


async def read_fields(request: web.Request) -> dict[str, str]:
    """``version``/``url``/``sha256`` from the query string and the body (form or JSON)."""
    fields: dict[str, str] = {}
    for key, value in strict_pairs(request.rel_url.raw_query_string, "utf-8", "query string"):
        put_field(fields, key, value, "query parameter")
    if not request.body_exists:
        return fields
    if request.content_length is not None and request.content_length > request.client_max_size:
        raise TooLarge(
            "request too large",
            f"the request body ({request.content_length} bytes) is larger than "
            f"{request.client_max_size} bytes",
        )
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            body = await body_fields(request)
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge("request too large", "request body is too large") from None
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {BODY_TIMEOUT:g}s") from None
    except (UnicodeDecodeError, LookupError) as e:  # not in its charset, or an unknown charset
        raise BadRequest("bad request", f"body is not readable text: {e}") from None
    for key, value, where in body:
        put_field(fields, key, value, where)
    return fields


def put_field(fields: dict[str, str], key: str, value: Any, where: str) -> None:
    """Add one request field to ``fields`` (``where`` it came from names it in errors); keys
    other than :data:`FIELDS` are ignored.  :class:`BadRequest` for a value that is no string,
    no valid text, or differs from the same field given elsewhere."""
    if key not in FIELDS:
        return
    if not isinstance(value, str):
        raise BadRequest("bad request", f"{key} must be a string ({where})")
    if not valid_text(value):  # a lone surrogate (JSON "\ud800") would be dropped later
        raise BadRequest("bad request", f"{key} is not valid Unicode text ({where})")
    if key in fields and fields[key] != value:
        raise BadRequest("bad request", f"{key} is given twice with different values")
    fields[key] = value


async def body_fields(request: web.Request) -> list[tuple[str, Any, str]]:
    """The body's ``(key, value, where)`` pairs, read by its Content-Type (JSON, urlencoded or
    multipart form); :class:`BadRequest` for another type with a non-empty body."""
    ctype = request.content_type
    if ctype == "application/json":
        return [(k, v, "JSON body") for k, v in parse_json_object(await request.text())]
    if ctype == "application/x-www-form-urlencoded":
        charset = request.charset or "utf-8"
        text = (await request.read()).decode(charset)
        return [(k, v, "form field") for k, v in strict_pairs(text, charset, "form body")]
    if ctype == "multipart/form-data":
        return [(k, v, "form field") for k, v in await read_form(request)]
    if await request.read():
        raise BadRequest(
            "bad request",
            f"unsupported Content-Type {ctype!r}: send form fields, JSON or query parameters",
        )
    return []


def valid_text(value: str) -> bool:
    """Whether ``value`` is Unicode text that UTF-8 can carry (no lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def strict_pairs(text: str, charset: str, where: str) -> list[tuple[str, str]]:
    """``a=1&b=2`` as pairs, percent-escapes decoded in ``charset``; 400 when an escape is not
    text in it. (aiohttp's parsers put U+FFFD in their place: ``url=.../%ff.cfg`` would
    download ``.../%EF%BF%BD.cfg``, a URL nobody sent.)"""
    try:
        return parse_qsl(text, keep_blank_values=True, encoding=charset, errors="strict")
    except UnicodeDecodeError as e:
        raise BadRequest(
            "bad request", f"{where} has a percent-escape that is not {charset} text: {e}"
        ) from None


def parse_json_object(text: str) -> list[tuple[str, Any]]:
    """The members of a JSON object body, in order and duplicates kept (so that a key given
    twice is caught like a form field given twice); 400 for anything else."""
    if json_depth(text) > MAX_JSON_DEPTH:
        raise BadRequest("bad request", f"JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(text, object_pairs_hook=_Members)
    except (ValueError, RecursionError) as e:
        raise BadRequest("bad request", f"body is not valid JSON: {e}") from None
    if not isinstance(data, _Members):
        raise BadRequest("bad request", "JSON body must be an object")
    return list(data)


class _Members(list[tuple[str, Any]]):
    """A JSON object as the list of its members (``object_pairs_hook``)."""


def json_depth(text: str, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep arrays and objects nest in ``text``: exact above ``limit`` (where it stops
    counting), an upper bound below it (brackets in strings are counted then)."""
    if text.count("[") + text.count("{") <= limit:
        return text.count("[") + text.count("{")
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif c in "]}":
            depth -= 1
    return deepest


async def read_form(request: web.Request) -> list[tuple[str, Any]]:
    """The fields of a form body, repeated ones included; 400 when it cannot be parsed."""
    try:
        return list((await request.post()).items())
    except web.HTTPRequestEntityTooLarge:
        raise
    except Exception as e:
        # aiohttp's form parsers raise whatever they meet: ValueError (a multipart body without
        # a boundary), UnicodeDecodeError (not in its charset), LookupError (unknown charset)...
        raise BadRequest("bad request", f"body is not a valid form: {e}") from None


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
        self._log_budgets: dict[int, LogBudget] = {}

    def log_refused(self, error: UpdateError) -> None:
        """One line per refused request, at most :class:`LogBudget`'s per minute per status."""
        budget = self._log_budgets.setdefault(error.status, LogBudget())
        allowed, held = budget.allow()
        if allowed:
            more = f" ({held} more refused with {error.status} not logged)" if held else ""
            log.info("hot update request refused (%d): %s%s", error.status, error.message, more)

    async def post(self, request: web.Request) -> web.Response:
        version: str | None = None
        try:
            self.tokens.check(request.headers.get("Authorization"))
            fields = await read_fields(request)
            version = fields.get("version")
            req = parse_update(fields)
            if self.updater.lock.locked():
                raise Busy(self.updater.busy_message())
        except UpdateError as e:
            self.log_refused(e)
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
            self.log_refused(e)
            return failed(e, None)
        return web.json_response(self.updater.status())
