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

OKG also copies ``opsState`` and the two priorities (``IntOrString.String()``) into labels of
the Pod (``game.kruise.io/gs-opsState``, ``game.kruise.io/gs-update-priority``,
``game.kruise.io/gs-deletion-priority``; ``GameServerManager.SyncGsToPod``). A value that is
not a valid label value (longer than 63 characters, a space, a sign such as ``-5`` or ``+5``)
passes the GameServer's API server but makes every later Pod update of OKG fail, so that the
GameServer's state never reaches the Pod: such values are refused here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from kidecar_core import describe_value, label_value_problem
from kidecar_plugins.game_api.errors import ApiError

OPS_STATES = ("None", "WaitToBeDeleted", "Allocated", "Maintaining", "Kill")
"""The opsStates OpenKruiseGame acts on."""
SPEC_FIELDS = ("opsState", "updatePriority", "deletionPriority", "networkDisabled")
INT32_MAX = 2**31 - 1
_DIGITS = re.compile(r"[0-9]+")
POD_LABEL = {
    "opsState": "game.kruise.io/gs-opsState",
    "updatePriority": "game.kruise.io/gs-update-priority",
    "deletionPriority": "game.kruise.io/gs-deletion-priority",
}
"""The Pod label OKG copies each field into (``kruise-game``, ``apis/v1alpha1``)."""


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
    """An ``updatePriority``/``deletionPriority`` value OKG reads as written and can copy into
    its Pod label: an integer from 0 to 2147483647, or a string of digits holding one; 400
    otherwise."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 10.0 is an integer to JSON Schema and the API server; OKG needs 10
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= INT32_MAX:
            return value
        if value < 0:
            raise ApiError(400, _label_refusal(name, str(value), "cannot begin with '-'"))
        raise ApiError(400, f"{name}: {value} is outside the 32-bit range OKG reads it in")
    if isinstance(value, str):
        if _DIGITS.fullmatch(value) and int(value) <= INT32_MAX:
            return value
        if value[:1] in ("+", "-") and _DIGITS.fullmatch(value[1:]):
            raise ApiError(400, _label_refusal(name, value, f"cannot begin with {value[0]!r}"))
        raise ApiError(
            400,
            f"{name}: {value[:64]!r} is not a 32-bit integer; OKG reads a non-numeric string "
            "as 0 (send an integer, e.g. 10)",
        )
    raise ApiError(400, f"{name}: must be an integer (or a string holding one), got {_kind(value)}")


def _label_refusal(name: str, text: str, why: str) -> str:
    hint = "e.g. 'Allocated' or 'room-full'" if name == "opsState" else "0 or more, e.g. 10"
    label = POD_LABEL.get(name, name)
    return (
        f"{name}: {text[:64]!r} {why}: OKG copies {name} into the Pod label {label}, "
        "and a label value must be at most 63 characters [A-Za-z0-9-_.] starting and ending "
        f"with an alphanumeric, or OKG cannot update the Pod (use {hint})"
    )


def check_ops_state(value: Any) -> str:
    """An ``opsState`` OKG can act on and copy into its Pod label; 400 otherwise."""
    if not isinstance(value, str):
        raise ApiError(400, f"opsState: must be a string, got {_kind(value)}")
    if not value:
        raise ApiError(400, "opsState: must not be empty (OKG's idle state is 'None')")
    if label_value_problem(value) is not None:
        why = "is longer than 63 characters" if len(value) > 63 else "is not a label value"
        raise ApiError(400, _label_refusal("opsState", value, why))
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
    """The value's kind; a number is shown (a float where an integer is wanted)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"the number {value!r}"[:80]
    return describe_value(value, json=True)
