"""Mirror every result into a pod annotation ``kidecar.io/last-<plugin>``: a ``tryfirst`` backend.

When to use it
    You want to see, on the pod itself, the last result of every plugin, including results
    whose ``storageConfig`` sends them elsewhere (a Prometheus gauge) or nowhere: while writing
    a config, when debugging a probe in a cluster, or for a dashboard that reads pod
    annotations.  ``kubectl get pod gs-0 -o yaml`` then shows, for example::

        kidecar.io/last-tcp_probe: '{"source":"plugins[0].config.endpoints[0].storageConfig",
                                     "state":"Unreachable","storage":"InKube"}'

How to load it
    ``kidecar run --plugin-file contrib/overrides/tryfirst_backend.py`` (or
    ``KIDECAR_PLUGIN_FILES``).  It needs no configuration.

Why ``tryfirst``
    Every backend's ``kidecar_persist`` contributes writes to one plan, and the core merges the
    plan in order: when two writes set the same key of the same object, **the later one wins**.
    ``tryfirst=True`` makes this backend run first, so its writes come first and anything the
    configured ``storageConfig`` writes to the same key overrides it.  The mirror is a default
    that never fights the user's config: if an ``inKube.annotationKey`` is also
    ``kidecar.io/last-<plugin>``, that annotation holds what ``InKube`` wrote (the bare state).
    (A ``trylast`` backend would be the opposite: the final word on every key it writes.)

Cost
    One more annotation per plugin, written only when its value changes (the core skips writes
    that change nothing), so a steady probe still costs no API writes.
"""

from __future__ import annotations

import json
import re

from kidecar_core import ObjectRef, Result, RuntimeView, Write, hookimpl

PREFIX = "kidecar.io/last-"
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def annotation_key(plugin: str) -> str:
    """``kidecar.io/last-<plugin>``, made a valid annotation key whatever the plugin's name."""
    name = _NOT_IN_NAME.sub("-", f"last-{plugin}")[:63].rstrip("-_.")
    return f"kidecar.io/{name}"


def mirror(result: Result) -> str:
    """The annotation's value: the state and where the result was configured to go, as JSON."""
    return json.dumps(
        {
            "state": result.state,
            "source": result.source,
            "storage": result.storage.type if result.storage is not None else None,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


@hookimpl(tryfirst=True)
def kidecar_persist(result: Result, runtime: RuntimeView) -> list[Write] | None:
    """Contribute the mirror annotation first, so that configured backends win on conflicts."""
    return [
        Write(
            ObjectRef.pod(runtime.identity),
            {"metadata": {"annotations": {annotation_key(result.plugin): mirror(result)}}},
            source=f"{result.source or result.plugin} (mirrored by tryfirst_backend.py)",
        )
    ]
