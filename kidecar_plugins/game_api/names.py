"""Label and annotation keys and values, checked the way the Kubernetes API server checks them.

The rules and the wording of the messages are apimachinery's (``IsQualifiedName``,
``IsValidLabelValue``, ``ValidateAnnotations`` in ``k8s.io/apimachinery``), so that the game
gets the API server's own explanation at once (400) instead of a write that is queued and then
rejected (422) where the game cannot see it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

NAME_MAX = 63
"""Longest name part of a qualified name (after the optional ``prefix/``), and longest label
value."""
PREFIX_MAX = 253
"""Longest prefix (a DNS-1123 subdomain)."""
ANNOTATIONS_MAX_BYTES = 256 * 1024
"""``TotalAnnotationSizeLimitB``: the keys and values of an object's annotations together."""

_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_RULE = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character"
)


def _name_problems(name: str, what: str) -> list[str]:
    if not name:
        return [f"{what} must be non-empty"]
    problems = []
    if len(name) > NAME_MAX:
        problems.append(f"{what} must be no more than {NAME_MAX} characters")
    if not _NAME.fullmatch(name):
        problems.append(f"{what} {_NAME_RULE}")
    return problems


def subdomain_problems(value: str) -> list[str]:
    """Why ``value`` is not a DNS-1123 subdomain (lower case, ``.``-separated, ≤ 253)."""
    problems = []
    if len(value) > PREFIX_MAX:
        problems.append(f"must be no more than {PREFIX_MAX} characters")
    if not _SUBDOMAIN.fullmatch(value):
        problems.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character"
        )
    return problems


def qualified_name_problems(key: str) -> list[str]:
    """Why ``key`` is not a qualified name (``[prefix/]name``): ``[]`` when it is one."""
    parts = key.split("/")
    if len(parts) > 2:
        return [
            f"a qualified name {_NAME_RULE}, with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    if len(parts) == 1:
        return _name_problems(key, "name part")
    prefix, name = parts
    if not prefix:
        problems = ["prefix part must be non-empty"]
    else:
        problems = [f"prefix part {p}" for p in subdomain_problems(prefix)]
    return problems + _name_problems(name, "name part")


def label_value_problems(value: str) -> list[str]:
    """Why ``value`` is not a valid label value (empty, or ≤ 63 characters of the name rule)."""
    if not value:
        return []
    problems = []
    if len(value) > NAME_MAX:
        problems.append(f"must be no more than {NAME_MAX} characters")
    if not _NAME.fullmatch(value):
        problems.append(f"a valid label {_NAME_RULE}")
    return problems


def annotation_key_problems(key: str) -> list[str]:
    """Annotation keys are qualified names, compared in lower case (``ValidateAnnotations``)."""
    return qualified_name_problems(key.lower())


def annotations_size(annotations: Mapping[str, str]) -> int:
    """Bytes the API server counts against :data:`ANNOTATIONS_MAX_BYTES` (keys + values, UTF-8)."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())


def okg_owned_label(key: str) -> bool:
    """``game.kruise.io/gs-*`` pod labels are OpenKruiseGame's (it overwrites them from the
    GameServer's spec), never the game's."""
    return key.startswith("game.kruise.io/gs-")
