"""One start of the ``pod_probe`` plugin: follow the pod, keep one worker per probe running,
write the results.

:class:`PodProbeRun` reacts to each version of the pod: it asks
:class:`~kidecar_plugins.pod_probe.source.ProbeSources` which probes the pod wants, starts a
:class:`~kidecar_plugins.pod_probe.worker.ProbeWorker` for a new probe, restarts one whose
spec changed (fresh thresholds; its condition keeps its last value until the restarted probe
reaches a state), stops one that is gone (its condition stays as last written, as with Kruise),
and hands the pod to the :class:`~kidecar_plugins.pod_probe.conditions.ConditionWriter`.

Bad input (an annotation that is not JSON, an unknown handler, a negative period, a named port
the container does not have) is reported once per problem: one log line and a ``Warning``
Event ``InvalidPodProbe`` on the pod.  The other probes keep running; nothing is written for
the bad one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs

from kidecar_core import Event, ObjectRef, PluginContext, every
from kidecar_plugins.pod_probe.conditions import ConditionWriter
from kidecar_plugins.pod_probe.config import PodProbeConfig
from kidecar_plugins.pod_probe.execprobe import run_exec
from kidecar_plugins.pod_probe.netprobe import make_session, probe_url, run_http, run_tcp
from kidecar_plugins.pod_probe.outcome import FAILED, SUCCEEDED, Outcome
from kidecar_plugins.pod_probe.source import ProbeSources, follow
from kidecar_plugins.pod_probe.spec import ExecAction, HTTPGetAction, PodProbe, TCPSocketAction
from kidecar_plugins.pod_probe.worker import ProbeWorker, WallClock

INVALID_EVENT = "InvalidPodProbe"
LOOPBACK = "127.0.0.1"


@attrs.frozen
class ProbeMetrics:
    """The plugin's Prometheus metrics (labelled by probe name: a handful per pod)."""

    probes: Any
    duration: Any

    def forget(self, plugin: str, probe: str) -> None:
        """Drop the series of a probe that stopped (probe names come and go with the
        annotation: kept series would grow without bound)."""
        for result in (SUCCEEDED, FAILED):
            with contextlib.suppress(KeyError):
                self.probes.remove(plugin, probe, result)
        with contextlib.suppress(KeyError):
            self.duration.remove(plugin, probe)

    @classmethod
    def of(cls, ctx: PluginContext) -> ProbeMetrics:
        return cls(
            probes=ctx.metrics.counter(
                "kidecar_pod_probe_probes",
                "pod_probe runs by probe name and result (Succeeded, Failed).",
                ["plugin", "probe", "result"],
            ),
            duration=ctx.metrics.histogram(
                "kidecar_pod_probe_duration_seconds",
                "Duration of pod_probe runs, whatever their result.",
                ["plugin", "probe"],
            ),
        )


async def run_probe(
    probe: PodProbe, pod: Mapping[str, Any], session: aiohttp.ClientSession
) -> Outcome:
    """Run one probe against ``pod`` (its IP is the default host) with the probe's timeout."""
    handler = probe.handler
    timeout = float(probe.timing.effective_timeout)
    if isinstance(handler, ExecAction):
        return await run_exec(handler, timeout)
    assert isinstance(handler.port, int)  # named ports were resolved from the pod spec
    host = handler.host or (pod.get("status") or {}).get("podIP") or LOOPBACK
    if isinstance(handler, TCPSocketAction):
        return await run_tcp(host, handler.port, timeout)
    assert isinstance(handler, HTTPGetAction)
    url = probe_url(handler.scheme, host, handler.port, handler.path)
    return await run_http(session, url, handler.headers, timeout)


class PodProbeRun:
    """What one start of the plugin owns: the HTTP session, the writer and the workers."""

    def __init__(self, ctx: PluginContext, config: PodProbeConfig, *, clock: WallClock = time.time):
        self.ctx = ctx
        self.clock = clock
        self.ref = ObjectRef.pod(ctx.identity)
        self.sources = ProbeSources(ctx, config)
        self.writer = ConditionWriter(ctx, self.ref, clock=clock)
        self.metrics = ProbeMetrics.of(ctx)
        self.session = make_session()
        self.pod: Mapping[str, Any] = {}
        self.workers: dict[tuple[str, str], tuple[PodProbe, asyncio.Task[None]]] = {}
        self.reported: set[str] = set()
        self.tasks: list[asyncio.Task[Any]] = []
        self._updating = asyncio.Lock()

    def start(self) -> None:
        self.tasks.append(self.ctx.spawn(self.writer.run(), "conditions"))
        self.tasks.append(self.ctx.spawn(self.follow(), "follow"))
        config: PodProbeConfig = self.ctx.config
        if config.pod_probe_markers:
            # PodProbeMarkers change without the pod changing: look again at their period.
            period = config.pod_probe_markers_period_seconds
            self.tasks.append(self.ctx.spawn(every(period, self.refresh, delay=period), "markers"))

    async def follow(self) -> None:
        async for pod in follow(self.ctx, self.ref):
            if pod is None:
                if self.ctx.first_time(("pod_probe-nopod", self.ctx.name)):
                    self.ctx.log.warning("pod %s does not exist (yet); waiting", self.ref)
                continue
            await self.update(pod)

    async def refresh(self) -> None:
        if self.pod:
            await self.update(self.pod)

    async def update(self, pod: Mapping[str, Any]) -> None:
        """React to a new version of the pod (one at a time: finding the probes may wait)."""
        async with self._updating:
            self.pod = pod
            found = await self.sources.find(pod)
            self.report(found.problems)
            self.reconcile(found.probes)
            self.writer.observe(pod)

    def report(self, problems: list[str]) -> None:
        """Log and record each problem once (again only after it went away and came back)."""
        for problem in problems:
            if problem not in self.reported:
                self.ctx.log.error("%s: probe not run: %s", self.ctx.path, problem)
                self.ctx.record_event(Event(INVALID_EVENT, f"probe not run: {problem}", "Warning"))
        self.reported = set(problems)

    def reconcile(self, probes: list[PodProbe]) -> None:
        """Start new probes, restart changed ones, stop those that are gone."""
        wanted = {p.key: p for p in probes}
        for key, (running, task) in list(self.workers.items()):
            if wanted.get(key) == running:
                continue
            task.cancel()
            del self.workers[key]
            new = wanted.get(key)
            if new is None or new.condition_type != running.condition_type:
                self.writer.forget(running.condition_type)
            if new is None and all(k[1] != key[1] for k in wanted):
                self.metrics.forget(self.ctx.name, key[1])
            what = "stopped (gone)" if new is None else "restarted (its spec changed)"
            self.ctx.log.info("probe %s of container %s %s", key[1], key[0], what)
        for key, probe in wanted.items():
            if key not in self.workers:
                self.workers[key] = (probe, self._start(probe))

    def _start(self, probe: PodProbe) -> asyncio.Task[None]:
        worker = ProbeWorker(
            probe,
            pod=lambda: self.pod,
            prober=self._probe,
            report=self.writer.set,
            clock=self.clock,
            observe=self._observe,
        )
        timing = probe.timing
        self.ctx.log.info(
            "probe %s (%s, container %s) -> condition %s: every %ds, timeout %ds, first after "
            "%ds, thresholds %d/%d",
            probe.name, probe.kind, probe.container_name, probe.condition_type,
            timing.effective_period, timing.effective_timeout, timing.effective_initial_delay,
            timing.effective_success_threshold, timing.effective_failure_threshold,
        )  # fmt: skip
        return self.ctx.spawn(worker.run(), f"probe-{probe.container_name}-{probe.name}")

    async def _probe(self, probe: PodProbe, pod: Mapping[str, Any]) -> Outcome:
        try:
            return await run_probe(probe, pod, self.session)
        except Exception as e:  # a bug must not stop the other probes: count it as a failure
            self.ctx.log.exception("probe %s raised unexpectedly", probe.name)
            return Outcome(False, f"kidecar error: {type(e).__name__}: {e}", "unexpected error")

    def _observe(self, probe: PodProbe, outcome: Outcome, seconds: float) -> None:
        self.metrics.probes.labels(self.ctx.name, probe.name, outcome.state).inc()
        self.metrics.duration.labels(self.ctx.name, probe.name).observe(max(seconds, 0.0))

    async def close(self) -> None:
        """Stop probing and writing, then close the HTTP session."""
        tasks = [*self.tasks, *(task for _, task in self.workers.values())]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.session.close()
