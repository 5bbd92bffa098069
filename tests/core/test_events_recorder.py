"""EventRecorder's rate limits, and that its memory of recent Events stays bounded."""

from __future__ import annotations

from typing import Any

import pytest

from kidecar_core._store.events import EventRecorder
from kidecar_core._store.objects import Event, ObjectRef, PodIdentity


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("kidecar_core._store.events.time.monotonic", fake)
    return fake


def recorder(**options: Any) -> EventRecorder:
    about = ObjectRef.pod(PodIdentity("gs-0", "default"))
    return EventRecorder(store=None, about=about, **options)  # type: ignore[arg-type]


def test_the_same_event_is_sent_once_per_dedupe_window(clock: Clock) -> None:
    rec = recorder(burst=100, dedupe_seconds=60)
    event = Event("OpsStateChanged", "kidecar set GameServer spec.opsState to Allocated")
    rec.record(event)
    rec.record(event)
    assert rec.dropped == 1
    clock.now += 61
    rec.record(event)
    assert rec.dropped == 1
    assert rec._queue.qsize() == 2


def test_recent_events_are_forgotten_after_the_window(clock: Clock) -> None:
    # Hot-update Events name the version, so every message is new: remembering them all would
    # grow without bound over the life of the pod.
    rec = recorder(burst=1000, dedupe_seconds=60)
    for i in range(50):
        rec.record(Event("HotUpdateSucceeded", f"v1.0.{i} applied"))
        clock.now += 10
    assert len(rec._recent) <= 7
    assert rec.dropped == 0


def test_an_event_about_another_object_is_recorded_about_it(tmp_path: Any) -> None:
    """``Event.about`` (a rollout's Event on the workload) names the object; the default is
    the pod. The same message about two objects is two Events, not a repeat."""
    import asyncio
    import json

    from kidecar_core._store.local import LocalStore

    who = PodIdentity("gs-0", "default")
    gss = ObjectRef("game.kruise.io", "v1alpha1", "gameserversets", "default", "game")

    async def main() -> None:
        store = LocalStore(tmp_path / "state.json", who)
        rec = EventRecorder(store, ObjectRef.pod(who))
        rec.start()
        rec.record(Event("RolloutPaused", "pod gs-0: probe Failed", "Warning", about=gss))
        rec.record(Event("RolloutPaused", "pod gs-0: probe Failed", "Warning"))
        await rec.drain(10)
        await rec.close()

    asyncio.run(main())
    events = json.loads((tmp_path / "state.json").read_text())["events"]
    assert [e["involvedObject"] for e in events] == [
        "gameserversets.game.kruise.io/default/game",
        "pods/default/gs-0",
    ]
