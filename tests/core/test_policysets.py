"""Policy writes are a set (Kruise PodProbeMarker's rule): what the previous state's policy set
and the new one's does not is removed, once; pure, no store."""

from __future__ import annotations

from kidecar_core import ObjectRef, PodIdentity, Result, Write
from kidecar_core._persist.policysets import PolicySets

WHO = PodIdentity("gs-0", "ns")
POD = ObjectRef.pod(WHO)
A = "plugins[0].config.endpoints[0].storageConfig"
B = "plugins[0].config.endpoints[1].storageConfig"


def result(origin: str) -> Result:
    return Result("p", "x", source=origin)


def labels(values: dict[str, str], *, policy: bool = True) -> Write:
    return Write(POD, {"metadata": {"labels": values}}, "src", policy_set=policy)


def test_keys_the_new_state_does_not_set_are_removed_once() -> None:
    sets = PolicySets()
    first = [labels({"drain-reason": "idle", "room": "open"})]
    assert sets.resolve(result(A), first) == first
    second = [labels({"room": "closed"})]
    out = sets.resolve(result(A), second)
    (removal,) = [w for w in out if w not in second]
    assert removal.patch == {"metadata": {"labels": {"drain-reason": None}}}
    assert removal.once and removal.target == POD
    assert "no longer set by the state's policy: metadata.labels.drain-reason" in removal.source
    # The same state again: nothing more to remove.
    assert sets.resolve(result(A), second) == second


def test_a_result_matching_no_policy_removes_the_whole_set() -> None:
    sets = PolicySets()
    sets.resolve(result(A), [labels({"a": "1"})])
    (removal,) = sets.resolve(result(A), [])
    assert removal.patch == {"metadata": {"labels": {"a": None}}}


def test_writes_that_are_not_policy_sets_are_never_removed() -> None:
    sets = PolicySets()
    sets.resolve(result(A), [labels({"state": "idle"}, policy=False)])
    assert sets.resolve(result(A), []) == []


def test_a_key_another_source_still_sets_is_kept_with_its_value() -> None:
    sets = PolicySets()
    sets.resolve(result(A), [labels({"shared": "a"})])
    sets.resolve(result(B), [labels({"shared": "b"})])
    (kept,) = sets.resolve(result(A), [])
    assert kept.patch == {"metadata": {"labels": {"shared": "b"}}}
    assert not kept.once
    # Origins are independent: B's set is untouched by A's results.
    (removal,) = sets.resolve(result(B), [])
    assert removal.patch == {"metadata": {"labels": {"shared": None}}}
