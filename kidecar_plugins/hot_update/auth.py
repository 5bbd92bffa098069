"""Bearer-token authentication of the hot-update API: the core's :class:`kidecar_core.TokenSource`
answering with the API's :class:`~kidecar_plugins.hot_update.errors.UpdateError`."""

from __future__ import annotations

from kidecar_core import AuthFailure
from kidecar_core import TokenSource as CoreTokenSource
from kidecar_plugins.hot_update.errors import Forbidden, Unauthorized


class TokenSource(CoreTokenSource):
    """The expected token; :meth:`check` raises :class:`Unauthorized` (401) or
    :class:`Forbidden` (403)."""

    def check(self, header: str | None) -> None:
        """Raise 401 without a bearer token, 403 with a wrong one; nothing when disabled."""
        try:
            super().check(header)
        except AuthFailure as e:
            if e.status == 401:
                raise Unauthorized(e.message) from None
            raise Forbidden("forbidden", e.message) from None
