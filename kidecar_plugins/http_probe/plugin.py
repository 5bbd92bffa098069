"""The ``http_probe`` plugin: OpenKruiseGame service-quality probing without kruise-daemon.

The game tells its state over HTTP (``idle``, ``Allocated``, ``WaitToBeDeleted``, a player
count...).  Each configured endpoint is probed at ``probeIntervalSeconds`` in a task of its own;
the answer (or the value at ``jsonPathConfig.jsonPath``) is the endpoint's *state*, confirmed by
``successThreshold`` probes, or ``Failed`` after ``failureThreshold`` failed probes.  Each change
of that effective state is emitted as a :class:`~kidecar_core.Result` to the endpoint's
``storageConfig``: ``InKube`` (pod annotation/label, GameServer ``spec.opsState`` through
``markerPolicies``) or ``HTTPMetric`` (a gauge on ``/metrics``).

Example (the Go predecessor's, loads unchanged)::

    plugins:
      - name: http_probe
        config:
          startDelaySeconds: 10
          probeIntervalSeconds: 5
          endpoints:
            - url: http://localhost:8080
              method: GET
              timeout: 30
              expectedStatusCode: 200
              storageConfig:
                type: InKube
                inKube:
                  markerPolices:
                    - {state: WaitToBeDeleted, gameServerOpsState: WaitToBeDeleted}
                    - {state: Allocated, gameServerOpsState: Allocated}
                    - {state: None, gameServerOpsState: None}

Hooks: the plugin is driven by its own tasks (``kidecar_start`` spawns one per endpoint), not by
``kidecar_tick``: a tick is awaited before the next one, and a hanging endpoint must not hold
back the others.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable

from kidecar_core import PluginContext, hookimpl
from kidecar_plugins.http_probe.config import HttpProbeConfig
from kidecar_plugins.http_probe.probe import make_session
from kidecar_plugins.http_probe.runner import EndpointProber, ProbeMetrics, ProbeRun
from kidecar_plugins.http_probe.state import Thresholds

NAME = "http_probe"

# Keys of ctx.state, which survives restarts of the plugin (not of the process).
_FIRST_START = "first_start"
_THRESHOLDS = "thresholds"
_RUN = "run"


@hookimpl
def kidecar_config_schema(name: str) -> type | None:
    return HttpProbeConfig if name == NAME else None


@hookimpl
def kidecar_start(ctx: PluginContext) -> Awaitable[None] | None:
    return _start(ctx)


@hookimpl
def kidecar_stop(ctx: PluginContext) -> Awaitable[None] | None:
    run: ProbeRun | None = ctx.state.pop(_RUN, None)
    return run.close() if run is not None else None


async def _start(ctx: PluginContext) -> None:
    """Open the HTTP session and spawn one probing task per endpoint."""
    config: HttpProbeConfig = ctx.config
    # startDelaySeconds is the game's boot time: counted from the plugin's first start, so a
    # plugin restarted after a crash probes again at once instead of waiting again.
    first_start: float = ctx.state.setdefault(_FIRST_START, time.monotonic())
    delay = max(0.0, config.start_delay_seconds - (time.monotonic() - first_start))
    # The thresholds (and so the effective states) survive a restart: a state that did not
    # change is not emitted again.
    thresholds: dict[int, Thresholds] = ctx.state.setdefault(_THRESHOLDS, {})
    metrics = ProbeMetrics.of(ctx)
    run = ProbeRun(make_session())
    ctx.state[_RUN] = run
    for index, endpoint in enumerate(config.endpoints):
        machine = thresholds.setdefault(
            index, Thresholds(endpoint.success_threshold, endpoint.failure_threshold)
        )
        prober = EndpointProber(
            ctx,
            index,
            endpoint,
            period=config.period,
            session=run.session,
            thresholds=machine,
            metrics=metrics,
        )
        run.tasks.append(ctx.spawn(prober.run(delay), f"endpoint-{index}"))
    ctx.log.info(
        "probing %d endpoint(s) every %gs, first probe in %gs",
        len(config.endpoints),
        config.period,
        delay,
    )
