"""The HTTP client sessions of the plugin: downloads and the game's reload requests.

Open between :meth:`Sessions.open` and :meth:`Sessions.close`; asking for one while closed
raises :class:`~.errors.NotRunning` (503) with :attr:`Sessions.down_reason`.
"""

from __future__ import annotations

import aiohttp

from kidecar_core import __version__
from kidecar_plugins.hot_update import reload
from kidecar_plugins.hot_update.download import make_session
from kidecar_plugins.hot_update.errors import NotRunning


class Sessions:
    """The download and request sessions, and why updates are refused while they are closed."""

    def __init__(self, *, allow_link_local: bool) -> None:
        self.allow_link_local = allow_link_local
        self.down_reason = "the hot_update plugin is starting"
        """Why updates are refused while it is not running (said in the 503)."""
        self._downloads: aiohttp.ClientSession | None = None
        self._requests: aiohttp.ClientSession | None = None

    def open(self) -> None:
        agent = {"User-Agent": f"kidecar/{__version__}"}
        allow = self.allow_link_local
        self._downloads = make_session(allow_link_local=allow, headers=agent)
        self._requests = reload.make_session(allow_link_local=allow, headers=agent)

    async def close(self) -> None:
        for session in (self._downloads, self._requests):
            if session is not None:
                await session.close()
        self._downloads = self._requests = None

    def download(self) -> aiohttp.ClientSession:
        """The download session; raises :class:`NotRunning` (503) when closed."""
        if self._downloads is None:
            raise self.down_error()
        return self._downloads

    def request(self) -> aiohttp.ClientSession:
        """The reload-request session; raises :class:`NotRunning` (503) when closed."""
        if self._requests is None:
            raise self.down_error()
        return self._requests

    def down_error(self) -> NotRunning:
        return NotRunning("not running", f"{self.down_reason}; try again later")
