"""What the Kubernetes API server accepts as names, labels and annotations: one set of rules.

Used by config validation (static label and annotation keys, ConfigMap names, ``kidecar
inject``) and by local mode (:mod:`kidecar_core._store.local` checks every write the way the
API server would), so that a config that works on a laptop works in a cluster.

The rules and messages follow ``k8s.io/apimachinery/pkg/util/validation`` (``IsDNS1123Label``,
``IsDNS1123Subdomain``, ``IsQualifiedName``, ``IsValidLabelValue``) and
``k8s.io/apimachinery/pkg/api/validation/objectmeta.go`` (``ValidateAnnotations``:
``TotalAnnotationSizeLimitB`` = 256 KiB, keys and values counted together).
Each ``*_problem`` function returns ``None`` when the value is valid, else why it is not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
"""Bytes of all annotation keys and values of one object together."""

# Matched with fullmatch: Python's `$` also matches before a final newline, Go's does not.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def is_dns1123_label(name: str) -> bool:
    """A DNS label (RFC 1123): ``a-z``, ``0-9``, ``-``, 1-63 characters (volume names...)."""
    return len(name) <= DNS1123_LABEL_MAX and _DNS1123_LABEL.fullmatch(name) is not None


def is_dns1123_subdomain(name: str) -> bool:
    """A DNS subdomain (RFC 1123): dot-separated DNS labels, up to 253 characters (the names of
    most objects, ConfigMaps included, and the prefix of a label or annotation key)."""
    return len(name) <= DNS1123_SUBDOMAIN_MAX and _DNS1123_SUBDOMAIN.fullmatch(name) is not None


def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label or annotation key (``[prefix/]name``); ``None`` if it is.

    ``prefix``: a DNS subdomain; ``name``: 1-63 characters ``[A-Za-z0-9-_.]``, alphanumeric at
    both ends.
    """
    if not isinstance(key, str) or not key:
        return "a key must be a non-empty string"
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return f"{key!r}: the prefix before '/' must not be empty"
    if prefix and not is_dns1123_subdomain(prefix):
        return f"{key!r}: prefix must be a DNS subdomain (lower case a-z, 0-9, '-', '.')"
    if len(name) > QUALIFIED_NAME_MAX or not _QUALIFIED_NAME.fullmatch(name):
        return (
            f"{key!r}: name must be 1-63 characters [A-Za-z0-9-_.], starting and ending with "
            "an alphanumeric character"
        )
    return None


def label_value_problem(value: Any) -> str | None:
    """Why ``value`` is not a valid label value; ``None`` if it is.

    At most 63 characters ``[A-Za-z0-9-_.]``, alphanumeric at both ends, or empty.
    """
    if not isinstance(value, str):
        return f"label values must be strings, got {type(value).__name__}"
    if len(value) > LABEL_VALUE_MAX:
        return f"{_short(value)}: must be no more than 63 characters (is {len(value)})"
    if not _LABEL_VALUE.fullmatch(value):
        return (
            f"{_short(value)}: a label value must be empty or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )
    return None


def annotation_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid annotation key; ``None`` if it is.  The rule of label keys,
    except that case does not matter (the API server checks the key in lower case)."""
    if not isinstance(key, str):
        return "a key must be a non-empty string"
    return qualified_name_problem(key.lower())


def annotations_size_problem(annotations: Mapping[str, Any]) -> str | None:
    """Why these annotations are too large together; ``None`` if they fit in 256 KiB (keys and
    values counted in UTF-8 bytes, as the API server counts them)."""
    total = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        return (
            f"annotations total {total} bytes, more than the {TOTAL_ANNOTATION_SIZE_LIMIT} "
            "bytes the API server accepts"
        )
    return None


def metadata_problems(metadata: Any) -> list[str]:
    """Every reason the API server would reject these labels and annotations, with its path
    (``metadata.labels.state: ...``)."""
    if not isinstance(metadata, Mapping):
        return []
    problems: list[str] = []
    labels = metadata.get("labels") or {}
    if not isinstance(labels, Mapping):
        problems.append("metadata.labels: must be a mapping of strings")
        labels = {}
    for key, value in labels.items():
        why = qualified_name_problem(key) or label_value_problem(value)
        if why:
            problems.append(f"metadata.labels.{key}: {why}")
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        problems.append("metadata.annotations: must be a mapping of strings")
        annotations = {}
    for key, value in annotations.items():
        why = annotation_key_problem(key)
        if why is None and not isinstance(value, str):
            why = f"annotation values must be strings, got {type(value).__name__}"
        if why:
            problems.append(f"metadata.annotations.{key}: {why}")
    size = annotations_size_problem(annotations)
    if size:
        problems.append(f"metadata.annotations: {size}")
    return problems


_SECTIONS = {("metadata",), ("spec",), ("metadata", "labels"), ("metadata", "annotations")}
_METADATA_MAPS = (("metadata", "labels"), ("metadata", "annotations"))


def pointer_value_problem(pointer: str, value: Any) -> str | None:
    """Why the API server would refuse ``value`` merge-patched at RFC 6901 ``pointer`` of any
    Kubernetes object; ``None`` if these rules pass (the object's schema may still refuse it).

    The rules every object shares (ObjectMeta, Kubernetes API conventions): ``metadata``,
    ``spec``, ``metadata.labels`` and ``metadata.annotations`` are objects, so a string cannot
    replace them; labels and annotations are flat maps, their keys and values checked as
    :func:`qualified_name_problem`, :func:`label_value_problem` and
    :func:`annotation_key_problem` do.  ``None`` (a merge-patch deletion) is always accepted.
    """
    segments = tuple(s.replace("~1", "/").replace("~0", "~") for s in pointer.split("/")[1:])
    if value is None:
        return None
    if segments in _SECTIONS and not isinstance(value, Mapping):
        return (
            f"{pointer!r} is a whole section (an object): a {type(value).__name__} cannot "
            f"replace it; name a field inside it, e.g. {pointer}/field"
        )
    if segments[:2] not in _METADATA_MAPS:
        return None
    kind = segments[1]
    if len(segments) == 2:
        problems = metadata_problems({kind: value})
        return "; ".join(problems) if problems else None
    if len(segments) > 3:
        return f"{pointer!r}: metadata.{kind} is a flat map (key -> string), it has no sub-fields"
    key = segments[2]
    if kind == "labels":
        return qualified_name_problem(key) or label_value_problem(value)
    if not isinstance(value, str):
        return f"annotation values must be strings, got {type(value).__name__}"
    return annotation_key_problem(key)


def _short(value: str) -> str:
    return repr(value if len(value) <= 70 else value[:67] + "...")
