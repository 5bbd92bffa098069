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

from collections.abc import Awaitable

from kidecar_core import (
    ConfigError,
    PluginContext,
    ProbeThresholds,
    StateKey,
    first_probe_delay,
    hookimpl,
    process_start,
)
from kidecar_plugins.http_probe.config import HttpProbeConfig
from kidecar_plugins.http_probe.probe import HttpTarget, make_session
from kidecar_plugins.http_probe.runner import ProbeRun, endpoint_loop, probe_metrics

NAME = "http_probe"

# Keys of ctx.state, which survives restarts of the plugin (not of the process).
_FIRST_START = StateKey[float]("first_start")
_THRESHOLDS = StateKey[dict[int, ProbeThresholds]]("thresholds")
_TARGETS = StateKey[list[HttpTarget]]("targets")
_RUN = StateKey[ProbeRun]("run")


@hookimpl
def kidecar_config_schema(name: str) -> type | None:
    return HttpProbeConfig if name == NAME else None


@hookimpl
def kidecar_configure(ctx: PluginContext) -> None:
    """Prepare each endpoint: compile its path, parse its status codes, load its ``caFile``."""
    config: HttpProbeConfig = ctx.config
    targets: list[HttpTarget] = []
    errors: list[ConfigError] = []
    for index, endpoint in enumerate(config.endpoints):
        try:
            targets.append(HttpTarget.prepare(endpoint))
        except ValueError as e:
            errors.append(ConfigError.single(f"endpoints[{index}].caFile", str(e)))
    if errors:
        raise ConfigError(p for e in errors for p in e.problems)
    ctx.state[_TARGETS] = targets


@hookimpl
def kidecar_start(ctx: PluginContext) -> Awaitable[None] | None:
    return _start(ctx)


@hookimpl
def kidecar_stop(ctx: PluginContext) -> Awaitable[None] | None:
    run = ctx.state.pop(_RUN)
    return run.close() if run is not None else None


async def _start(ctx: PluginContext) -> None:
    """Open the HTTP session and spawn one probing task per endpoint."""
    config: HttpProbeConfig = ctx.config
    clock = ctx.clock
    # Counted from the sidecar's start (its container's), like Kubernetes' initialDelaySeconds.
    first_start = ctx.state.setdefault(_FIRST_START, process_start(clock))
    delay = first_probe_delay(first_start, config.start_delay_seconds, clock)
    # The thresholds (and so the effective states) survive a restart: a state that did not
    # change is not emitted again.
    thresholds = ctx.state.setdefault(_THRESHOLDS, {})
    targets = ctx.state.get(_TARGETS) or [HttpTarget.prepare(e) for e in config.endpoints]
    metrics = probe_metrics(ctx)
    run = ProbeRun(make_session())
    ctx.state[_RUN] = run
    for index, target in enumerate(targets):
        endpoint = target.endpoint
        machine = thresholds.setdefault(
            index, ProbeThresholds(endpoint.success_threshold, endpoint.failure_threshold)
        )
        loop = endpoint_loop(
            ctx,
            index,
            target,
            session=run.session,
            thresholds=machine,
            metrics=metrics,
            clock=clock,
        )
        run.tasks.append(ctx.spawn(loop.run(config.period, delay), f"endpoint-{index}"))
    ctx.log.info(
        "probing %d endpoint(s) every %gs, first probe in %gs",
        len(config.endpoints),
        config.period,
        delay,
    )
