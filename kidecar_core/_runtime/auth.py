"""Bearer-token authentication of the plugins' HTTP APIs, and where such an API may listen.

Used by ``hot_update`` (``POST /hot-update``) and ``game_api`` (``/v1/...``): a plugin puts a
:class:`BearerAuth` in its config, builds a :class:`TokenSource` from it in
``kidecar_configure`` (``load()`` reports an unusable token as a config error) and calls
:meth:`TokenSource.check` with each request's ``Authorization`` header.

The token comes from a file (a mounted Secret, re-read when it changes, so a rotated Secret
takes effect without a restart) or from an environment variable. Comparison is constant-time
(``hmac.compare_digest``). Tokens are never logged.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import attrs

from kidecar_core._base.files import read_regular_file
from kidecar_core._config.schema import FieldError, field
from kidecar_core.errors import ConfigError, KidecarError

log = logging.getLogger("kidecar.auth")

MAX_TOKEN_BYTES = 64 * 1024
"""A token file larger than this is refused (a Secret holds at most 1 MiB; a token is short)."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@attrs.frozen
class BearerAuth:
    """Who may call the API: a bearer token (``Authorization: Bearer <token>``).

    Without a token the API is reachable from inside the pod only (127.0.0.1).
    """

    token_file: str | None = field(
        key="tokenFile",
        default=None,
        doc="File holding the token (e.g. a mounted Secret); re-read when it changes.",
    )
    token_env: str | None = field(
        key="tokenEnv", default=None, doc="Environment variable of the sidecar holding the token."
    )

    def __attrs_post_init__(self) -> None:
        if self.token_file is not None and self.token_env is not None:
            raise FieldError("tokenFile", "set tokenFile or tokenEnv, not both")
        if self.token_env is not None and not _ENV_NAME.match(self.token_env):
            raise FieldError("tokenEnv", f"{self.token_env!r} is not an environment variable name")

    @property
    def configured(self) -> bool:
        """Whether a token source is set (``tokenFile`` or ``tokenEnv``)."""
        return self.token_file is not None or self.token_env is not None


class AuthFailure(KidecarError):
    """A request refused by :meth:`TokenSource.check`.

    ``status`` is the HTTP status to answer: 401 when the request has no bearer token (answer
    with ``WWW-Authenticate: Bearer``), 403 when it has a wrong one; ``message`` says which and
    never contains the token.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TokenSource:
    """The expected token of one API; :meth:`check` authenticates an ``Authorization`` header.

    ``config_path`` is where the :class:`BearerAuth` sits in the plugin's config (``auth``), for
    the paths of config errors; ``env`` replaces ``os.environ`` (tests).
    """

    def __init__(
        self, config: BearerAuth, env: Mapping[str, str] | None = None, config_path: str = "auth"
    ) -> None:
        self.config = config
        self.config_path = config_path
        self._env = os.environ if env is None else env
        self._token: bytes | None = None
        self._mtime: int | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        """Whether requests must carry the token."""
        return self.config.configured

    def load(self) -> None:
        """Read the token now; :class:`~kidecar_core.ConfigError` (path ``<config_path>.tokenEnv``
        or ``.tokenFile``) when it is unset, unreadable or empty."""
        if self.config.token_env is not None:
            value = self._env.get(self.config.token_env, "").strip()
            if not value:
                raise ConfigError.single(
                    f"{self.config_path}.tokenEnv",
                    f"environment variable {self.config.token_env} is not set or empty",
                )
            self._token = value.encode()
        elif self.config.token_file is not None:
            where = f"{self.config_path}.tokenFile"
            try:
                self._read_file()
            except OSError as e:
                raise ConfigError.single(
                    where, f"cannot read {self.config.token_file}: {e.strerror or e}"
                ) from None
            if not self._token:
                raise ConfigError.single(where, f"{self.config.token_file} is empty")

    def _read_file(self) -> None:
        assert self.config.token_file is not None
        path = Path(self.config.token_file)
        mtime = path.stat().st_mtime_ns
        if mtime != self._mtime:
            data = read_regular_file(path, MAX_TOKEN_BYTES)
            if len(data) > MAX_TOKEN_BYTES:
                raise OSError(0, f"larger than {MAX_TOKEN_BYTES} bytes: not a token")
            self._token = data.strip()
            self._mtime = mtime

    def _current(self) -> bytes | None:
        if self.config.token_file is not None:
            try:
                self._read_file()
                self._warned = False
            except OSError as e:
                # Keep the last good token: a Secret update swaps files under a symlink.
                if not self._warned:
                    log.warning("cannot re-read tokenFile %s: %s", self.config.token_file, e)
                    self._warned = True
        return self._token or None

    def check(self, header: str | None) -> None:
        """Raise :class:`AuthFailure` 401 without a bearer token, 403 with a wrong one; return
        quietly when it is right or when no token is configured."""
        if not self.enabled:
            return
        scheme, _, given = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise AuthFailure(401, "missing bearer token: send 'Authorization: Bearer <token>'")
        expected = self._current()
        # aiohttp keeps header bytes that are not UTF-8 as surrogate escapes: compare the bytes
        # as sent (a strict encode() would raise on them and turn a wrong token into a 500).
        given_bytes = given.strip().encode("utf-8", "surrogateescape")
        if expected is None or not hmac.compare_digest(given_bytes, expected):
            raise AuthFailure(403, "invalid bearer token")
