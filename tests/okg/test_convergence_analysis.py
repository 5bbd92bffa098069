"""The audit-log analysis behind the convergence test (pure logic: no cluster needed)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from tests.support.audit import AuditEvent, AuditLog
from tests.support.convergence import Change, Convergence, analyse

T0 = 1_800_000_000.0
KIDECAR = "system:serviceaccount:ns:kidecar"
OKG = "system:serviceaccount:kruise-game-system:kruise-game-controller-manager"


def write(
    at: float, user: str, ops: str, *, name: str = "gs-0", namespace: str = "ns",
    resource: str = "gameservers", code: int = 200,
) -> AuditEvent:  # fmt: skip
    return AuditEvent(
        user=user,
        verb="patch",
        resource=resource,
        namespace=namespace,
        name=name,
        code=code,
        time=datetime.datetime.fromtimestamp(T0 + at, datetime.UTC),
        obj={"kind": "GameServer", "spec": {"opsState": ops}},
    )


def run(changes: list[Change], events: list[AuditEvent], until: float = 10.0) -> Convergence:
    return analyse(
        {"gs-0": [(T0 + t, v) for t, v in changes]},
        events,
        namespace="ns",
        owner=KIDECAR,
        initial="None",
        observed_until=T0 + until,
    )


def test_a_change_is_wrong_until_the_owner_writes_it() -> None:
    result = run([(1.0, "Allocated")], [write(1.25, KIDECAR, "Allocated")])
    assert [(i.cause, i.length(0)) for i in result.intervals] == [("change", pytest.approx(0.25))]
    assert result.reverts == {}
    assert result.longer_than(2.0) == []


def test_a_revert_is_counted_and_lasts_until_the_repair() -> None:
    events = [
        write(1.1, KIDECAR, "Allocated"),
        write(1.2, OKG, "None"),  # stale spec written back
        write(2.7, KIDECAR, "Allocated"),  # repaired 1.5 s later
    ]
    result = run([(1.0, "Allocated")], events)
    assert result.reverts == {OKG: 1}
    assert result.worst("revert") == pytest.approx(1.5)
    assert result.longer_than(2.0) == []


def test_a_revert_nobody_repairs_stays_open_until_the_end() -> None:
    events = [write(1.1, KIDECAR, "Allocated"), write(1.2, OKG, "None")]
    result = run([(1.0, "Allocated")], events, until=5.0)
    (interval,) = result.longer_than(2.0)
    assert interval.end is None
    assert interval.shown == "None" and interval.expected == "Allocated"
    assert interval.length(result.observed_until) == pytest.approx(3.8)
    assert "1 still wrong at the end" in result.summary()


def test_writes_that_leave_the_opsstate_alone_and_unrelated_writes_are_no_reverts() -> None:
    events = [
        write(1.1, KIDECAR, "Allocated"),
        write(1.2, OKG, "Allocated"),  # e.g. labels synced, opsState unchanged
        write(1.3, OKG, "None", resource="gameservers/status"),
        write(1.3, OKG, "None", namespace="other"),
        write(1.3, OKG, "None", name="gs-9"),
        write(1.3, OKG, "None", code=409),
    ]
    result = run([(1.0, "Allocated")], events)
    assert result.reverts == {}
    assert result.worst() == pytest.approx(0.1)


def test_the_audit_log_reader_counts_writes_per_user_and_resource(tmp_path: Path) -> None:
    def line(user: str, verb: str, resource: str, sub: str = "", code: int = 200) -> str:
        return json.dumps({
            "kind": "Event", "verb": verb, "user": {"username": user},
            "objectRef": {"resource": resource, "subresource": sub, "namespace": "ns",
                          "name": "gs-0"},
            "responseStatus": {"code": code},
            "stageTimestamp": "2026-12-04T10:00:00.123456Z",
        })  # fmt: skip

    path = tmp_path / "audit.log"
    path.write_text(line(OKG, "patch", "gameservers", "status") + "\n")
    log = AuditLog(path)
    mark = log.mark()
    with open(path, "a") as f:
        f.write(line(KIDECAR, "patch", "gameservers") + "\n")
        f.write(line(KIDECAR, "patch", "pods") + "\n")
        f.write(line(KIDECAR, "get", "pods") + "\n")
        f.write(line(OKG, "update", "gameservers", code=409) + "\n")
        f.write(line(OKG, "create", "events")[:20])  # still being written: not read yet
    assert log.count_writes(mark) == {(KIDECAR, "gameservers"): 1, (KIDECAR, "pods"): 1}
    assert log.count_writes() == {
        (OKG, "gameservers/status"): 1, (KIDECAR, "gameservers"): 1, (KIDECAR, "pods"): 1,
    }  # fmt: skip
    assert log.writes_by(OKG, mark) == 0
    assert AuditLog(tmp_path / "missing.log").count_writes() == {}
