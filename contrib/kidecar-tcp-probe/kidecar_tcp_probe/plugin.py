"""The ``tcp_probe`` plugin: a game server's state from the TCP reachability of its ports.

Many game servers speak their own protocol over TCP (or UDP, with a TCP admin/query port) and
have no HTTP state endpoint for ``http_probe``.  This plugin connects to each configured port at
``probeIntervalSeconds`` (optionally sends a ping and checks the reply against ``expect``) and
records ``Reachable`` / ``Unreachable`` (or ``upState`` / ``downState``) through the endpoint's
``storageConfig``, so that ``markerPolicies`` can, say, take an unreachable server out of
allocation::

    plugins:
      - name: tcp_probe
        config:
          startDelaySeconds: 10
          probeIntervalSeconds: 5
          endpoints:
            - port: 7777
              timeout: 1
              failureThreshold: 3
              storageConfig:
                type: InKube
                inKube:
                  annotationKey: game.example.com/tcp-7777
                  markerPolicies:
                    - {state: Unreachable, gameServerOpsState: Maintaining}
                    - {state: Reachable, gameServerOpsState: None}

Each endpoint is probed by a task of its own (``kidecar_start`` spawns them), not by
``kidecar_tick``: the core awaits a tick before the next one, and a hanging port must not hold
back the others.  A result is emitted only when an endpoint's thresholded state changes.
"""

from __future__ import annotations

from kidecar_core import PluginContext, ProbeThresholds, StateKey, first_probe_delay, hookimpl

from kidecar_tcp_probe.config import TcpProbeConfig
from kidecar_tcp_probe.runner import Target, TcpMetrics, endpoint_loop

NAME = "tcp_probe"

# Keys of ctx.state, which survives restarts of the plugin (not of the process).
_FIRST_START = StateKey[float]("first_start")
_THRESHOLDS = StateKey[dict[int, ProbeThresholds]]("thresholds")


@hookimpl
def kidecar_config_schema(name: str) -> type | None:
    """``plugins[].config`` of ``tcp_probe`` is a :class:`TcpProbeConfig`."""
    return TcpProbeConfig if name == NAME else None


@hookimpl
def kidecar_start(ctx: PluginContext) -> None:
    """Spawn one probing task per endpoint."""
    config: TcpProbeConfig = ctx.config
    clock = ctx.clock
    first_start = ctx.state.setdefault(_FIRST_START, clock.now())
    delay = first_probe_delay(first_start, config.start_delay_seconds, clock)
    # Kept across restarts: a state that did not change is not emitted again.
    machines = ctx.state.setdefault(_THRESHOLDS, {})
    metrics = TcpMetrics.of(ctx.metrics)
    for index, endpoint in enumerate(config.endpoints):
        up, down = config.states(endpoint)
        target = Target(
            plugin=ctx.name,
            index=index,
            endpoint=endpoint,
            up_state=up,
            down_state=down,
            source=ctx.config_path(f"endpoints[{index}].storageConfig"),
        )
        thresholds = machines.setdefault(index, target.thresholds())
        loop = endpoint_loop(
            target, thresholds=thresholds, emit=ctx.emit, metrics=metrics, clock=clock
        )
        # ctx.spawn: the core cancels these tasks (closing any open connection) when the
        # plugin stops or restarts, so the plugin needs no kidecar_stop of its own.
        ctx.spawn(loop.run(config.period, delay), f"endpoint-{index}")
    ctx.log.info(
        "probing %d TCP endpoint(s) every %gs, first probe in %gs: %s",
        len(config.endpoints),
        config.period,
        delay,
        ", ".join(e.address for e in config.endpoints),
    )
