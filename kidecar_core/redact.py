"""Credentials out of everything kidecar shows or stores: logs, Events, records and API answers.

A URL carries credentials in its userinfo (``https://user:password@host/``) and, when it is a
presigned download URL, in its query string (S3 ``X-Amz-Signature``, OSS ``Signature``, Azure
SAS ``sig``, CDN ``auth_key``...). Which query parameters are secret depends on the vendor, so
the whole query goes, with the userinfo and the fragment:
``https://user:pw@cdn/v2/game.pak?X-Amz-Signature=S`` becomes ``https://cdn/v2/game.pak``.

:func:`redact_url` is for a URL kidecar holds; :func:`redact_text` for free text that may hold
URLs or bearer tokens (an error message from aiohttp quotes the URL it failed on). The log
formatters (:mod:`kidecar_core._runtime.logs`) and the Event recorder apply
:func:`redact_text` to every line and message, so a plugin that forgets is still covered; plugins
apply them to what they store and answer.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

from yarl import URL

_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]{0,20}://[^\s'\"<>`]+")
_CREDENTIAL = re.compile(r"(?i)(\bbearer\s+|authorization:\s*basic\s+)[A-Za-z0-9._~+/=\-]{12,}")
"""A bearer token or basic credentials (12 characters or more: not the words of a message)."""
INVALID_URL = "<invalid url>"


def redact_url(url: str | URL) -> str:
    """``url`` without userinfo, query string and fragment: ``scheme://host[:port]/path``.

    Never raises: text that is not a URL becomes ``"<invalid url>"``.
    """
    text = str(url)
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port out of range
    except ValueError:
        return INVALID_URL
    if not parts.scheme or not parts.netloc:
        return INVALID_URL if ("@" in text or "?" in text) else text
    return _rebuild(parts, port)


def _rebuild(parts: SplitResult, port: int | None) -> str:
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (:func:`redact_url`) and bearer/basic credentials
    replaced by ``***``."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: _redact_match(m.group(0)), text)
    return _CREDENTIAL.sub(lambda m: f"{m.group(1)}***", text)


def _redact_match(found: str) -> str:
    if "@" not in found and "?" not in found and "#" not in found:
        return found  # nothing secret: keep it exactly as written
    return redact_url(found)
