"""Bearer-token authentication of the hot-update API.

The token comes from a file (a mounted Secret, re-read when it changes, so a rotated Secret
takes effect without a restart) or from an environment variable. Comparison is constant-time.
Tokens are never logged.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from kidecar_core import ConfigError
from kidecar_plugins.hot_update.config import AuthConfig
from kidecar_plugins.hot_update.errors import UpdateError

log = logging.getLogger("kidecar.plugin.hot_update")


class TokenSource:
    """The expected token; :meth:`check` authenticates an ``Authorization`` header."""

    def __init__(self, config: AuthConfig, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._env = os.environ if env is None else env
        self._token: bytes | None = None
        self._mtime: int | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.config.configured

    def load(self) -> None:
        """Read the token now; ``ConfigError`` (path relative to the plugin config) if unusable."""
        if self.config.token_env is not None:
            value = self._env.get(self.config.token_env, "").strip()
            if not value:
                raise ConfigError.single(
                    "auth.tokenEnv",
                    f"environment variable {self.config.token_env} is not set or empty",
                )
            self._token = value.encode()
        elif self.config.token_file is not None:
            try:
                self._read_file()
            except OSError as e:
                raise ConfigError.single(
                    "auth.tokenFile", f"cannot read {self.config.token_file}: {e.strerror or e}"
                ) from None
            if not self._token:
                raise ConfigError.single("auth.tokenFile", f"{self.config.token_file} is empty")

    def _read_file(self) -> None:
        assert self.config.token_file is not None
        path = Path(self.config.token_file)
        mtime = path.stat().st_mtime_ns
        if mtime != self._mtime:
            self._token = path.read_bytes().strip()
            self._mtime = mtime

    def _current(self) -> bytes | None:
        if self.config.token_file is not None:
            try:
                self._read_file()
                self._warned = False
            except OSError as e:
                # Keep the last good token: a Secret update swaps files under a symlink.
                if not self._warned:
                    log.warning("cannot re-read auth.tokenFile %s: %s", self.config.token_file, e)
                    self._warned = True
        return self._token or None

    def check(self, header: str | None) -> None:
        """Raise 401 without a bearer token, 403 with a wrong one; nothing when disabled."""
        if not self.enabled:
            return
        scheme, _, given = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise UpdateError(
                401, "unauthorized", "missing bearer token: send 'Authorization: Bearer <token>'"
            )
        expected = self._current()
        if expected is None or not hmac.compare_digest(given.strip().encode(), expected):
            raise UpdateError(403, "forbidden", "invalid bearer token")
