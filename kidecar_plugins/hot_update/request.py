"""A validated hot-update request (what to apply, from where)."""

from __future__ import annotations

import attrs
from yarl import URL

from kidecar_plugins.hot_update.urls import file_name, parse_url


@attrs.frozen
class UpdateRequest:
    """A validated request to apply ``url`` as ``version``."""

    version: str
    url: URL
    sha256: str | None
    name: str
    recorded_without_credentials: bool = False
    """A replay of a record whose URL lost its userinfo/query when it was stored."""

    @classmethod
    def create(
        cls,
        version: str,
        url: str,
        sha256: str | None,
        *,
        recorded_without_credentials: bool = False,
    ) -> UpdateRequest:
        """Raises :class:`~.errors.BadRequest` (400) for a URL that is not usable."""
        parsed = parse_url(url)
        return cls(version, parsed, sha256, file_name(parsed), recorded_without_credentials)

    @property
    def has_credentials(self) -> bool:
        """The URL has userinfo or a query string (what records and answers leave out)."""
        return (
            self.url.user is not None
            or self.url.password is not None
            or bool(self.url.query_string)
        )
