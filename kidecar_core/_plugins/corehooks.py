"""Hook implementations of the core itself, registered before any plugin."""

from __future__ import annotations

from kidecar_core._persist.result import Result
from kidecar_core._persist.write import Write
from kidecar_core._plugins.context import RuntimeView
from kidecar_core.hookspecs import hookimpl


@hookimpl(trylast=True)
def kidecar_persist(result: Result, runtime: RuntimeView) -> list[Write] | None:
    """The writes a plugin asked for directly (``Result.writes``) join the plan here, last.

    Going through the hook (rather than being added by the runtime afterwards) lets
    ``wrapper=True`` overrides see and change them like every other write.
    """
    return list(result.writes) or None
