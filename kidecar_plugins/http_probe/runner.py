"""From an endpoint's effective-state changes to results; the session and tasks of one run.

The probing itself (period, thresholds, metrics, logs) is the probe kit's
:class:`~kidecar_core.ProbeLoop`; this module says what an HTTP endpoint's change becomes: a
:class:`~kidecar_core.Result` to the endpoint's ``storageConfig`` (and a ``ProbeFailed`` Event
when it failed ``failureThreshold`` times in a row).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import attrs

from kidecar_core import (
    LOOP_CLOCK,
    Clock,
    Event,
    PluginContext,
    ProbeChange,
    ProbeLoop,
    ProbeMetrics,
    ProbeOutcome,
    ProbeThresholds,
    Result,
)
from kidecar_plugins.http_probe.probe import OUTCOMES, HttpTarget, display_url, probe_once

KIND = "probe"
METRICS_PREFIX = "kidecar_http_probe"


def probe_metrics(ctx: PluginContext) -> ProbeMetrics:
    """The plugin's metrics: ``kidecar_http_probe_probes_total``, ``..._duration_seconds``,
    ``..._state_changes_total``."""
    return ProbeMetrics.create(ctx.metrics, METRICS_PREFIX, "HTTP probes", OUTCOMES)


def endpoint_loop(
    ctx: PluginContext,
    index: int,
    target: HttpTarget,
    *,
    session: aiohttp.ClientSession,
    thresholds: ProbeThresholds,
    metrics: ProbeMetrics,
    clock: Clock = LOOP_CLOCK,
) -> ProbeLoop:
    """The probe loop of endpoint ``index``: each change of its state is emitted as a result."""
    url = display_url(target.endpoint.url)

    async def probe() -> ProbeOutcome:
        return await probe_once(session, target)

    def on_change(change: ProbeChange) -> None:
        ctx.emit(change_result(ctx, target, url, change))

    return ProbeLoop(
        plugin=ctx.name,
        index=index,
        target=url,
        probe=probe,
        thresholds=thresholds,
        on_change=on_change,
        metrics=metrics,
        log=ctx.log,
        clock=clock,
    )


def change_result(ctx: PluginContext, target: HttpTarget, url: str, change: ProbeChange) -> Result:
    """The result of one change of an endpoint's effective state."""
    events: tuple[Event, ...] = ()
    if change.failed:
        message = (
            f"{ctx.name} endpoint {change.index} ({url}) failed {change.failures} times in a "
            f"row: {change.outcome.reason}"
        )
        events = (Event("ProbeFailed", message, "Warning"),)
    return Result(
        plugin=ctx.name,
        state=change.state,
        storage=target.endpoint.storage_config,
        source=ctx.config_path(f"endpoints[{change.index}].storageConfig"),
        kind=KIND,
        data={
            "endpoint": change.index,
            "url": url,
            "previous": change.previous,
            "reason": change.outcome.reason,
            "status": change.outcome.detail.get("status"),
        },
        events=events,
    )


@attrs.define
class ProbeRun:
    """What one start of the plugin owns: the HTTP session and the probing tasks."""

    session: aiohttp.ClientSession
    tasks: list[asyncio.Task[Any]] = attrs.field(factory=list)

    async def close(self) -> None:
        """Stop probing, then close the session (in that order: no probe sees a closed session)."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()
