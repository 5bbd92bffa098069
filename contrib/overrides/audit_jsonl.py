"""Append every result to a JSON Lines file, for audit: a ``kidecar_on_result`` observer.

When to use it
    You need a durable, greppable record of what each plugin decided and when (a probe saw the
    game down at 03:12, a hot update failed), beyond the pod's last annotation and the Events
    Kubernetes expires after an hour: for post-mortems, or to ship with a log collector
    (point it at the file on a shared ``emptyDir``).

How to load it
    ``kidecar run --plugin-file contrib/overrides/audit_jsonl.py`` (or ``KIDECAR_PLUGIN_FILES``).

    ``KIDECAR_AUDIT_FILE``: the file (default ``kidecar-audit.jsonl`` in the working directory).
    ``KIDECAR_AUDIT_MAX_BYTES``: when the file grows past this size (default 10 MiB) it is
    renamed to ``<file>.1`` (replacing the previous one) and a new file is started, so the audit
    can never fill the pod's disk.

What it writes
    One JSON object per line and result::

        {"at": "2024-05-01T03:12:09.120Z", "pod": "default/gs-0", "plugin": "tcp_probe",
         "kind": "probe", "state": "Unreachable", "source": "plugins[0]...storageConfig",
         "storage": "InKube", "data": {"address": "127.0.0.1:7777", "reason": "..."}}

    and, when the sidecar stops (``kidecar_shutdown``), a record with ``"plugin": "kidecar",
    "kind": "shutdown"``, so that a gap in the results can be told from a stopped sidecar.
    Results that plugins emit while stopping may still follow it.

    ``kidecar_on_result`` fires for every result before it is persisted.  The hook returns an
    awaitable that the core awaits, and the file is written in a worker thread, so a slow disk
    never blocks the event loop.  A write that fails is logged by the core and does not stop
    the result from being stored.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any

from kidecar_core import Result, RuntimeView, hookimpl

FILE_VAR = "KIDECAR_AUDIT_FILE"
MAX_BYTES_VAR = "KIDECAR_AUDIT_MAX_BYTES"
DEFAULT_FILE = "kidecar-audit.jsonl"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024


def audit_record(result: Result, runtime: RuntimeView) -> dict[str, Any]:
    """The JSON object written for ``result``."""
    at = datetime.datetime.fromtimestamp(result.at, tz=datetime.UTC)
    who = runtime.identity
    return {
        "at": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "pod": f"{who.namespace}/{who.name}",
        "plugin": result.plugin,
        "kind": result.kind,
        "state": result.state,
        "source": result.source,
        "storage": result.storage.type if result.storage is not None else None,
        "data": dict(result.data),
    }


def shutdown_record(runtime: RuntimeView) -> dict[str, Any]:
    """The JSON object written when the sidecar stops."""
    at = datetime.datetime.now(tz=datetime.UTC)
    who = runtime.identity
    return {
        "at": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "pod": f"{who.namespace}/{who.name}",
        "plugin": "kidecar",
        "kind": "shutdown",
        "state": "stopping",
        "source": "",
        "storage": None,
        "data": {},
    }


def append(path: Path, line: str, max_bytes: int) -> None:
    """Append ``line`` to ``path``, first rotating the file to ``<path>.1`` when it is full."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.stat().st_size + len(line.encode()) > max_bytes:
            path.replace(path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass
    with path.open("a", encoding="utf-8") as f:
        f.write(line)


def settings(env: Mapping[str, str] | None = None) -> tuple[Path, int]:
    """The audit file and its size limit, from the environment."""
    environ = os.environ if env is None else env
    path = Path(environ.get(FILE_VAR) or DEFAULT_FILE)
    max_bytes = int(environ.get(MAX_BYTES_VAR) or DEFAULT_MAX_BYTES)
    return path, max_bytes


@hookimpl
def kidecar_on_result(result: Result, runtime: RuntimeView) -> Awaitable[None] | None:
    """Append the result to the audit file, off the event loop."""
    path, max_bytes = settings()
    # default=str: plugin data may hold values JSON does not know (paths, enums); the audit
    # records them as text rather than failing.
    line = json.dumps(audit_record(result, runtime), default=str, sort_keys=True) + "\n"
    return asyncio.to_thread(append, path, line, max_bytes)


@hookimpl
def kidecar_shutdown(runtime: RuntimeView) -> Awaitable[None] | None:
    """Record that the sidecar is stopping."""
    path, max_bytes = settings()
    line = json.dumps(shutdown_record(runtime), sort_keys=True) + "\n"
    return asyncio.to_thread(append, path, line, max_bytes)
