"""``rollout.follow``: the watch, and the fall back to polling when the Role forbids it (the 403
injected into the testing kit's watch; the real API server's 403 is in test_rollout_small)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from kidecar_core import ForbiddenError, ObjectRef, TransientPersistError, configmap_ref
from kidecar_core.testing import FakeContext
from kidecar_plugins.hot_update.rollout import follow as follow_module
from kidecar_plugins.hot_update.rollout.follow import follow


def document(rv: str) -> dict[str, Any]:
    return {"metadata": {"name": "kidecar-rollout", "resourceVersion": rv}, "data": {"k": rv}}


FORBIDDEN = ForbiddenError("forbidden", verb="watch", group="", resource="configmaps")


def test_changes_come_by_watch_and_a_403_falls_back_to_polling_once_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow_module, "WATCH_RETRY_SECONDS", 0.05)  # the watch tried again

    async def main() -> list[str | None]:
        ctx = FakeContext("hot_update")
        ref: ObjectRef = configmap_ref(ctx.identity.namespace)
        seen: list[str | None] = []
        following = follow(ctx, ref, 3600.0)  # a poll would take an hour: changes are watched

        async def until(count: int) -> None:
            async with asyncio.timeout(30):
                while len(seen) < count:
                    found = await anext(following)
                    seen.append(None if found is None else found["metadata"]["resourceVersion"])

        await until(1)  # no document yet
        ctx.set_object(ref, document("1"))
        await until(2)
        ctx.fail_watch(ref, TransientPersistError("the API server is away"))  # retried inside
        ctx.set_object(ref, document("2"))
        await until(3)
        await following.aclose()  # type: ignore[attr-defined]

        polling = follow(ctx, ref, 0.01)
        assert (await anext(polling))["metadata"]["resourceVersion"] == "2"
        ctx.fail_watch(ref, FORBIDDEN)  # read every 0.01 s instead, the watch tried again
        ctx.set_object(ref, document("3"))
        async with asyncio.timeout(30):
            while (await anext(polling))["metadata"]["resourceVersion"] != "3":
                pass
        for rv in ("4", "5", "6"):  # the retried watch refused again or not: every change
            ctx.fail_watch(ref, FORBIDDEN)  # arrives once, the warning is not repeated
            ctx.set_object(ref, document(rv))
            found = await asyncio.wait_for(anext(polling), 30)
            assert found["metadata"]["resourceVersion"] == rv
        await polling.aclose()  # type: ignore[attr-defined]
        return seen

    with caplog.at_level(logging.WARNING, logger="kidecar.plugin.hot_update"):
        assert asyncio.run(main()) == [None, "1", "2"]
    said = [r.getMessage() for r in caplog.records if "cannot watch" in r.getMessage()]
    assert said == [
        "cannot watch configmaps/default/kidecar-rollout: the Role lacks verb=watch "
        'apiGroup="" resource=configmaps resourceNames=[kidecar-rollout] '
        "(deploy/base/rbac.yaml has it); reading it every 0.01s instead"
    ]


def test_a_403_on_get_is_not_reported_as_a_missing_watch(caplog: pytest.LogCaptureFixture) -> None:
    """A Role with ``watch`` but not ``get``: the log must name the missing ``get`` and must not
    promise that reading the object works instead."""

    async def main() -> None:
        ctx = FakeContext("hot_update")
        ref: ObjectRef = configmap_ref(ctx.identity.namespace)
        ctx.set_object(ref, document("1"))
        following = follow(ctx, ref, 0.01)
        await anext(following)
        ctx.fail_watch(
            ref, ForbiddenError("forbidden", verb="get", group="", resource="configmaps")
        )
        ctx.set_object(ref, document("2"))
        await asyncio.wait_for(anext(following), 30)
        await following.aclose()  # type: ignore[attr-defined]

    with caplog.at_level(logging.WARNING, logger="kidecar.plugin.hot_update"):
        asyncio.run(main())
    said = [r.getMessage() for r in caplog.records if "the Role lacks" in r.getMessage()]
    assert said == [
        "cannot read configmaps/default/kidecar-rollout: the Role lacks verb=get "
        'apiGroup="" resource=configmaps resourceNames=[kidecar-rollout] '
        "(deploy/base/rbac.yaml has it); trying again every 0.01s"
    ]


def test_closing_the_follow_closes_its_watch_at_once() -> None:
    """``aclose()`` (the plugin stopping) ends the watch subscription then, not at a later
    garbage collection."""

    async def main() -> int:
        ctx = FakeContext("hot_update")
        ref: ObjectRef = configmap_ref(ctx.identity.namespace)
        following = follow(ctx, ref, 1.0)
        await anext(following)
        await following.aclose()  # type: ignore[attr-defined]
        return len(ctx._followers[ref])

    assert asyncio.run(main()) == 0


def test_a_role_without_get_and_watch_is_said_once_not_at_every_watch_retry(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch and the reads both get 403 for ``get``: one warning naming the missing rule,
    not one more each time the watch is tried again (every 10 min in production)."""
    monkeypatch.setattr(follow_module, "WATCH_RETRY_SECONDS", 0.05)  # the watch tried again
    forbidden = ForbiddenError("forbidden", verb="get", group="", resource="configmaps")
    reads = 0
    enough = asyncio.Event()

    async def no_watch(ref: ObjectRef, **_: Any) -> Any:
        raise forbidden
        yield  # an async generator, as the runtime's watch

    async def no_get(ref: ObjectRef) -> Any:
        nonlocal reads
        reads += 1
        if reads >= 15:  # three rounds of reads, each after a new watch attempt
            enough.set()
        raise forbidden

    async def main() -> None:
        ctx = FakeContext("hot_update")
        ref: ObjectRef = configmap_ref(ctx.identity.namespace)
        monkeypatch.setattr(ctx, "watch_object", no_watch)
        monkeypatch.setattr(ctx, "get_object", no_get)
        following = follow(ctx, ref, 0.01)
        task = asyncio.ensure_future(anext(following))
        async with asyncio.timeout(30):
            await enough.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await following.aclose()  # type: ignore[attr-defined]

    with caplog.at_level(logging.INFO, logger="kidecar.plugin.hot_update"):
        asyncio.run(main())
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "cannot read configmaps/default/kidecar-rollout: the Role lacks verb=get "
        'apiGroup="" resource=configmaps resourceNames=[kidecar-rollout] '
        "(deploy/base/rbac.yaml has it); trying again every 0.01s"
    ]
