"""From a response body to a probe *state*: path compilation, extraction and stringification.

Everything here is pure: :func:`extract_state` takes bytes and a compiled path and returns either
the state (a string) or an :class:`ExtractFailure`; it never raises, whatever the body holds.

Paths come in two spellings, both accepted by ``jsonPathConfig.jsonPath``:

* **gjson style**, the Go predecessor's: ``data.state``, ``players.0.name`` (a number selects an
  array element, or an object key made of digits), ``players.#`` (the length of an array),
  ``players.#.name`` (that key of every element), ``\\.`` for a literal dot.  gjson's queries and
  modifiers (``*``, ``?``, ``#(...)``, ``@reverse``, ``|``) are not supported: use JSONPath.
* **JSONPath** (RFC 9535, evaluated by the ``python-jsonpath`` library) when the path starts with
  ``$``: ``$.data.state``, ``$.players[0].name``, ``$..score``.

How values become states (predictable, and the same as the Go predecessor's gjson for scalars):
strings as they are; numbers as JSON numbers without exponent or needless fraction (``3``,
``2.5``, ``3.0`` → ``3``, ``1e3`` → ``1000``); ``true``/``false``; ``null``; objects and lists as
compact JSON.  A path that matches several values (``$..score``, ``players.#.name``) gives the
compact JSON list of them.  Without a path the state is the body, decoded as UTF-8 and trimmed.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import attrs
import jsonpath

COUNT = "#"
_GJSON_UNSUPPORTED = frozenset("*?|")


@attrs.frozen
class ExtractFailure:
    """Why a body yielded no state (the probe then counts as failed)."""

    reason: str


@attrs.frozen
class StatePath:
    """A compiled ``jsonPathConfig.jsonPath``.

    ``query`` is the JSONPath evaluated on the parsed body; with ``count`` the state is the length
    of the single array it selects (gjson's trailing ``#``).
    """

    text: str
    query: jsonpath.JSONPath | jsonpath.CompoundJSONPath
    count: bool = False
    root_only: bool = False


def compile_path(text: str) -> StatePath:
    """Compile a gjson-style or ``$``-JSONPath path; ``ValueError`` says what is wrong."""
    spelled = text.strip()
    if not spelled:
        raise ValueError("must not be empty")
    if spelled.startswith("$"):
        return StatePath(text, _compile_jsonpath(spelled), root_only=spelled == "$")
    segments = _gjson_segments(spelled)
    count = segments[-1] == COUNT
    if count:
        segments = segments[:-1]
        if not segments:
            raise ValueError(f"{text!r}: '#' counts the elements of an array; name the array first")
    return StatePath(text, _compile_jsonpath(_to_jsonpath(segments)), count=count)


def to_jsonpath(text: str) -> str:
    """The JSONPath a gjson path becomes (``data.state`` → ``$['data']['state']``)."""
    spelled = text.strip()
    if spelled.startswith("$"):
        return spelled
    segments = _gjson_segments(spelled)
    if segments[-1] == COUNT:
        segments = segments[:-1]
    return _to_jsonpath(segments)


def _compile_jsonpath(text: str) -> jsonpath.JSONPath | jsonpath.CompoundJSONPath:
    try:
        return jsonpath.compile(text)
    except jsonpath.JSONPathError as e:
        # The library's message spans several lines with a caret diagram; keep its first line.
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{text!r} is not a valid JSONPath: {first}") from None


def _gjson_segments(text: str) -> list[str]:
    """Split a gjson path on unescaped dots; reject the gjson features we do not translate."""
    segments: list[str] = []
    current: list[str] = []
    special = False  # whether the current segment holds an unescaped gjson metacharacter
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise ValueError(f"{text!r} ends with a lone backslash")
            current.append(escaped)
        elif ch == ".":
            segments.append(_segment(text, "".join(current), special))
            current, special = [], False
        else:
            special = special or ch in _GJSON_UNSUPPORTED
            current.append(ch)
    segments.append(_segment(text, "".join(current), special))
    return segments


def _segment(text: str, segment: str, special: bool) -> str:
    if not segment:
        raise ValueError(f"{text!r} has an empty key (two dots in a row, or a dot at an end)")
    if special or segment.startswith("@") or (segment.startswith(COUNT) and segment != COUNT):
        raise ValueError(
            f"{text!r}: gjson queries and modifiers (*, ?, |, #(...), @...) are not supported; "
            "write a JSONPath starting with '$' instead (e.g. $.players[?@.ready == true])"
        )
    return segment


def _to_jsonpath(segments: list[str]) -> str:
    parts = ["$"]
    for segment in segments:
        if segment == COUNT:
            parts.append("[*]")
        elif segment.isascii() and segment.isdigit():
            # python-jsonpath's index selector also selects a digits-only key of an object,
            # which is what gjson does for `items.0`.
            parts.append(f"[{int(segment)}]")
        else:
            quoted = segment.replace("\\", "\\\\").replace("'", "\\'")
            parts.append(f"['{quoted}']")
    return "".join(parts)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """Parse a JSON document strictly (``NaN``/``Infinity`` rejected); ``ValueError`` if invalid."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def stringify(value: Any) -> str:
    """The state for one JSON value (see the module docstring)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_number(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def format_number(value: float) -> str:
    """A float the way gjson prints numbers: no exponent, no needless fraction (``3.0`` → ``3``)."""
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a JSON number")
    exact = Decimal(repr(value))
    if exact == exact.to_integral_value():
        return str(int(exact))
    return format(exact.normalize(), "f")


def decode_text(body: bytes) -> str | ExtractFailure:
    """The trimmed body as text (UTF-8, an initial BOM dropped), or why it is not text."""
    try:
        return body.decode("utf-8-sig").strip()
    except UnicodeDecodeError as e:
        return ExtractFailure(f"body is not UTF-8 text (byte {e.start})")


def extract_state(body: bytes, path: StatePath | None) -> str | ExtractFailure:
    """The probe state held by ``body``: the value at ``path``, or the trimmed body without one.

    Pure and total: any body (empty, garbage, huge numbers, deep nesting) gives a string or an
    :class:`ExtractFailure`, never an exception.
    """
    if path is None:
        return decode_text(body)
    try:
        document = parse_json(body)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, too many digits, NaN, depth
        return ExtractFailure(f"body is not valid JSON: {_short(e)}")
    try:
        values = _select(document, path)
        if not values:
            return ExtractFailure(f"{path.text!r} not found in the body")
        if path.count:
            if len(values) != 1 or not isinstance(values[0], list):
                return ExtractFailure(f"{path.text!r}: '#' needs exactly one array to count")
            return str(len(values[0]))
        return _clean(stringify(values[0] if len(values) == 1 else values))
    except Exception as e:
        # Filters, recursive descent and the library's function extensions run arbitrary
        # comparisons on untrusted data (RecursionError, TypeError, the library's own errors):
        # whatever goes wrong while evaluating a body is a failed probe, never a crash.
        return ExtractFailure(f"cannot evaluate {path.text!r}: {_short(e)}")


def _select(document: Any, path: StatePath) -> list[Any]:
    # python-jsonpath parses a *str* argument as a JSON document: a body that is itself a JSON
    # string must not be parsed a second time.  A string has no members, so only `$` matches.
    if isinstance(document, str):
        return [document] if path.root_only else []
    return list(path.query.findall(document))


def _clean(state: str) -> str:
    """The state with lone surrogates (``"\\ud800"`` in a JSON string) replaced by ``?``.

    They are valid in JSON text but cannot be encoded as UTF-8: not in a log line, not in an
    annotation.
    """
    try:
        state.encode("utf-8")
    except UnicodeEncodeError:
        return state.encode("utf-8", "replace").decode("utf-8")
    return state


def _short(error: BaseException, limit: int = 160) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
