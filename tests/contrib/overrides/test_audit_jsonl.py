"""``contrib/overrides/audit_jsonl.py``: every result appended to a JSON Lines file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.contrib.overrides.recipes import RunSidecar, filestate, load_recipe, opsstate_policies

RECIPE = "audit_jsonl.py"
audit = load_recipe("audit_jsonl")


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_results_are_appended_in_order(tmp_path: Path, run_sidecar: RunSidecar) -> None:
    state_file = tmp_path / "state.txt"
    state_file.write_text("down")
    audit_file = tmp_path / "audit" / "kidecar.jsonl"
    storage = opsstate_policies(down="Maintaining")
    sc = run_sidecar(
        {"plugins": [filestate(state_file, storage, interval=0.1)]},
        RECIPE,
        env={"KIDECAR_AUDIT_FILE": str(audit_file)},
    )
    sc.wait_for(lambda: records(audit_file), what="a first audit record")
    state_file.write_text("up")
    sc.wait_for(lambda: records(audit_file)[-1]["state"] == "up", what="the second state")
    assert sc.stop() == 0

    found = records(audit_file)
    stops = [r for r in found if r["kind"] == "shutdown"]
    assert [(r["plugin"], r["pod"]) for r in stops] == [("kidecar", "default/gs-0")]
    found = [r for r in found if r["kind"] != "shutdown"]
    states = [r["state"] for r in found]
    first_up = states.index("up")
    assert set(states[:first_up]) == {"down"} and set(states[first_up:]) == {"up"}
    first = found[0]
    assert first["pod"] == "default/gs-0"
    assert (first["plugin"], first["kind"], first["storage"]) == ("tp_filestate", "test", "InKube")
    assert first["source"] == "plugins[0].config.storageConfig"
    assert first["at"].endswith("Z") and "T" in first["at"]
    # The audit is an observer: the result was still persisted.
    assert sc.state()["gameserver"]["spec"]["opsState"] == "Maintaining"


def test_the_file_is_rotated_when_full(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    for i in range(10):
        audit.append(path, json.dumps({"i": i}) + "\n", 30)
    rotated = path.with_name("audit.jsonl.1")

    def numbers(p: Path) -> list[int]:
        return [json.loads(line)["i"] for line in p.read_text().splitlines()]

    # 9-byte lines, 30 bytes at most: three lines per file, the newest file is the live one.
    assert (numbers(rotated), numbers(path)) == ([6, 7, 8], [9])


def test_settings_come_from_the_environment() -> None:
    assert audit.settings({}) == (Path("kidecar-audit.jsonl"), 10 * 1024 * 1024)
    assert audit.settings({"KIDECAR_AUDIT_FILE": "/x/a.jsonl", "KIDECAR_AUDIT_MAX_BYTES": "5"}) == (
        Path("/x/a.jsonl"),
        5,
    )
