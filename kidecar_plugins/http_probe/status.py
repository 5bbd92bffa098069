"""``expectedStatusCode``: which HTTP status codes a probe reads the state from.

A code (``200``), a range (``"200-399"``, both ends included: kubelet's success rule is
200 ≤ code < 400, ``DoHTTPProbe`` in kubernetes/kubernetes ``pkg/probe/http/http.go``), or a list
of codes and ranges (``[200, 503]``: a draining game that answers 503 with ``{"state":
"draining"}`` still tells its state).  Pure: parsing raises ``ValueError`` with what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

StatusSpec = int | str | Sequence[int | str]
"""How ``expectedStatusCode`` is written in the config."""

_RANGE = re.compile(r"^\s*(\d{3})\s*-\s*(\d{3})\s*$")
_CODE = re.compile(r"^\s*(\d{3})\s*$")
KUBELET_SUCCESS = "200-399"
"""kubelet's rule for a successful HTTP probe, spelled as a range."""


@attrs.frozen
class StatusCodes:
    """A set of HTTP status codes, as inclusive ranges (a single code is a range of one)."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and any(low <= code <= high for low, high in self.ranges)

    @property
    def expects_redirect(self) -> bool:
        """Whether a 3xx answer is expected (then redirects are never followed)."""
        return any(low <= 399 and high >= 300 for low, high in self.ranges)

    def __str__(self) -> str:
        parts = [str(low) if low == high else f"{low}-{high}" for low, high in self.ranges]
        return parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"


def parse_status_codes(spec: StatusSpec) -> StatusCodes:
    """``200``, ``"200-399"`` or a list of them → :class:`StatusCodes`.

    Raises ``ValueError`` saying what is wrong (not a code, out of 100-599, reversed range).
    """
    items = [spec] if isinstance(spec, int | str) else list(spec)
    if not items:
        raise ValueError("must list at least one status code")
    return StatusCodes(tuple(_parse_item(item) for item in items))


def _parse_item(item: int | str) -> tuple[int, int]:
    if isinstance(item, bool):
        raise ValueError(f"{item!r} is not an HTTP status code")
    if isinstance(item, int):
        return _checked(item, item, str(item))
    if (m := _CODE.match(item)) is not None:
        code = int(m.group(1))
        return _checked(code, code, item)
    if (m := _RANGE.match(item)) is not None:
        return _checked(int(m.group(1)), int(m.group(2)), item)
    raise ValueError(
        f"{item!r} is not a status code or range: write 200, '200-399' or a list like [200, 503]"
    )


def _checked(low: int, high: int, text: str) -> tuple[int, int]:
    if not (100 <= low <= 599 and 100 <= high <= 599):
        raise ValueError(f"{text}: HTTP status codes are 100-599")
    if low > high:
        raise ValueError(f"{text}: the range's first code must not exceed its last")
    return low, high
