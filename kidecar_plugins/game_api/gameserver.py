"""The GameServer as the game sees it, and the fields the game may write.

:func:`view` turns the OpenKruiseGame GameServer object into the flat JSON the API answers with;
:func:`parse_spec_patch` checks a ``PATCH /v1/gameserver`` body against the types of OKG's
GameServer CRD (``game.kruise.io/v1alpha1``, ``spec``):

* ``opsState``: a string. OKG knows ``None``, ``WaitToBeDeleted``, ``Allocated``,
  ``Maintaining`` and ``Kill`` and treats any other string as a custom state;
* ``updatePriority``, ``deletionPriority``: ``x-kubernetes-int-or-string``. OKG reads them as
  Go ``intstr.IntOrString`` and compares their ``IntValue()``: a 32-bit integer, or a string
  holding one. A string like ``"high"`` passes the API server and silently counts as 0 in OKG,
  so it is refused here; so is an integer outside the int32 range, which OKG cannot decode.
  ``10.0`` (an integer to JSON Schema and to the API server) is written as ``10``, which OKG
  can decode;
* ``networkDisabled``: a boolean.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from kidecar_plugins.game_api.errors import ApiError

OPS_STATES = ("None", "WaitToBeDeleted", "Allocated", "Maintaining", "Kill")
"""The opsStates OpenKruiseGame acts on."""
SPEC_FIELDS = ("opsState", "updatePriority", "deletionPriority", "networkDisabled")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_DECIMAL = re.compile(r"[+-]?[0-9]+")


def view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The GameServer ``obj`` as the API answers: ``name``, ``namespace``, ``resourceVersion``,
    the four spec fields (``null`` when unset), all ``labels`` and ``annotations``, and
    ``status`` as OKG keeps it (``{}`` before OKG wrote any)."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    return {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "resourceVersion": metadata.get("resourceVersion"),
        **{name: spec.get(name) for name in SPEC_FIELDS},
        "labels": dict(metadata.get("labels") or {}),
        "annotations": dict(metadata.get("annotations") or {}),
        "status": dict(obj.get("status") or {}),
    }


def _unknown_field(key: str) -> ApiError:
    close = difflib.get_close_matches(key, SPEC_FIELDS, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ApiError(
        400,
        f"unknown field {key!r}{hint}: a PATCH may set {', '.join(SPEC_FIELDS)}",
    )


def check_priority(name: str, value: Any) -> int | str:
    """An ``updatePriority``/``deletionPriority`` value OKG reads as written; 400 otherwise."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 10.0 is an integer to JSON Schema and the API server; OKG needs 10
    if isinstance(value, int) and not isinstance(value, bool):
        if INT32_MIN <= value <= INT32_MAX:
            return value
        raise ApiError(400, f"{name}: {value} is outside the 32-bit range OKG reads it in")
    if isinstance(value, str):
        if _DECIMAL.fullmatch(value) and INT32_MIN <= int(value) <= INT32_MAX:
            return value
        raise ApiError(
            400,
            f"{name}: {value[:64]!r} is not a 32-bit integer; OKG reads a non-numeric string "
            "as 0 (send an integer, e.g. 10)",
        )
    raise ApiError(400, f"{name}: must be an integer (or a string holding one), got {_kind(value)}")


def check_ops_state(value: Any) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"opsState: must be a string, got {_kind(value)}")
    if not value:
        raise ApiError(400, "opsState: must not be empty (OKG's idle state is 'None')")
    return value


def parse_spec_patch(body: Any) -> dict[str, Any]:
    """The fields of a ``PATCH /v1/gameserver`` body, checked; :class:`ApiError` 400 with the
    first problem (unknown field, wrong type, value OKG would misread, empty body)."""
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object, got {_kind(body)}")
    if not body:
        raise ApiError(400, f"nothing to change: give at least one of {', '.join(SPEC_FIELDS)}")
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if key == "opsState":
            fields[key] = check_ops_state(value)
        elif key in ("updatePriority", "deletionPriority"):
            fields[key] = check_priority(key, value)
        elif key == "networkDisabled":
            if not isinstance(value, bool):
                raise ApiError(400, f"networkDisabled: must be true or false, got {_kind(value)}")
            fields[key] = value
        else:
            raise _unknown_field(key)
    return fields


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"[:80]
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
