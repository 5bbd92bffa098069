"""``kidecar_core.testing``: the kit plugin authors test with behaves like the runtime."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kidecar_core import ConfigError, Event, ObjectRef, Result, every
from kidecar_core.testing import FakeContext, ManualClock, load_config


def test_fake_context_records_results_events_and_task_failures() -> None:
    async def main() -> FakeContext:
        ctx = FakeContext("p", {"a": 1}, index=2)
        pod = ObjectRef.pod(ctx.identity)
        ctx.objects[pod] = {"metadata": {"name": "gs-0"}}
        assert await ctx.get_object(pod) == {"metadata": {"name": "gs-0"}}
        assert await ctx.get_object(ObjectRef.gameserver(ctx.identity)) is None
        assert ctx.config_path("endpoints[0]") == "plugins[2].config.endpoints[0]"
        assert ctx.first_time("x") and not ctx.first_time("x")
        ctx.emit(Result(plugin="p", state="up"))
        ctx.record_event(Event("Up", "it is up"))

        async def boom() -> None:
            raise RuntimeError("task broken on purpose")

        ctx.spawn(boom(), "boom")
        ctx.spawn(asyncio.sleep(3600), "sleeper")
        await asyncio.sleep(0.01)
        await ctx.close()
        return ctx

    ctx = asyncio.run(main())
    assert [r.state for r in ctx.results] == ["up"]
    assert [e.reason for e in ctx.events] == ["Up"]
    assert [str(e) for e in ctx.failures] == ["task broken on purpose"]
    assert all(t.done() for t in ctx.tasks)


def test_fake_context_followers_see_set_object() -> None:
    async def main() -> list[object]:
        ctx = FakeContext("p")
        gs = ObjectRef.gameserver(ctx.identity)
        seen: list[object] = []
        follower = ctx.watch_object(gs)
        seen.append(await anext(follower))  # the state now: no GameServer yet
        ctx.set_object(gs, {"spec": {"opsState": "None"}})
        seen.append(await anext(follower))
        ctx.set_object(gs, None)
        seen.append(await anext(follower))
        await follower.aclose()  # type: ignore[attr-defined]
        return seen

    assert asyncio.run(main()) == [None, {"spec": {"opsState": "None"}}, None]


def test_a_plugin_loop_on_the_context_clock_runs_as_the_test_advances_it() -> None:
    async def main() -> list[float]:
        clock = ManualClock()
        ctx = FakeContext("p", clock=clock)
        seen: list[float] = []

        async def probe() -> None:
            seen.append(ctx.clock.now())

        ctx.spawn(every(5.0, probe, delay=1.0, clock=ctx.clock), "loop")
        await clock.advance(12.0)
        await ctx.close()
        return seen

    assert asyncio.run(main()) == [1.0, 6.0, 11.0]


def test_load_config_reads_against_the_installed_plugins(tmp_path: Path) -> None:
    loaded = load_config(
        {
            "plugins": [
                {"name": "http_probe", "config": {"endpoints": [{"url": "http://127.0.0.1:1/"}]}}
            ]
        }
    )
    assert [p.name for p in loaded.plugins] == ["http_probe"]
    path = tmp_path / "config.yaml"
    path.write_text("plugins:\n  - name: http_probe\n    config: {probeIntervalSeconds: -1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any(
        str(p).startswith("plugins[0].config.probeIntervalSeconds") for p in info.value.problems
    )
