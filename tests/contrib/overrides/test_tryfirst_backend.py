"""``contrib/overrides/tryfirst_backend.py``: every result mirrored on the pod; configured
storage wins on a conflict because the tryfirst backend's writes come first in the plan."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from kidecar_core import ObjectRef, PodIdentity, Result, StorageConfig
from kidecar_core._plugins.manager import Plugins
from kidecar_core.testing import Sidecar
from tests.contrib.overrides.recipes import (
    OVERRIDES,
    RunSidecar,
    filestate,
    load_recipe,
    opsstate_policies,
)

RECIPE = "tryfirst_backend.py"
mirror = load_recipe("tryfirst_backend")
KEY = "kidecar.io/last-tp_filestate"


def pod_annotations(sc: Sidecar) -> dict[str, str]:
    found: dict[str, str] = sc.state()["pod"]["metadata"].get("annotations", {})
    return found


def ops_state(sc: Sidecar) -> str:
    return str(sc.state()["gameserver"]["spec"]["opsState"])


def test_every_result_is_mirrored_beside_the_configured_storage(
    tmp_path: Path, run_sidecar: RunSidecar
) -> None:
    state_file = tmp_path / "state.txt"
    state_file.write_text("down")
    storage = opsstate_policies(down="Maintaining", up="None")
    sc = run_sidecar({"plugins": [filestate(state_file, storage)]}, RECIPE)
    sc.wait_for(lambda: KEY in pod_annotations(sc), what="the mirror annotation")
    assert json.loads(pod_annotations(sc)[KEY]) == {
        "state": "down",
        "source": "plugins[0].config.storageConfig",
        "storage": "InKube",
    }
    # The GameServer has a write worker of its own: wait for it rather than race it.
    sc.wait_for(lambda: ops_state(sc) == "Maintaining", what="opsState Maintaining")
    assert sc.state()["gameserver"]["spec"]["opsState"] == "Maintaining"  # InKube still works

    state_file.write_text("up")
    sc.wait_for(lambda: json.loads(pod_annotations(sc)[KEY])["state"] == "up", what="up mirrored")
    sc.wait_for(lambda: ops_state(sc) == "None", what="opsState None")
    assert sc.state()["gameserver"]["spec"]["opsState"] == "None"
    assert sc.stop() == 0


def test_results_stored_nowhere_are_mirrored_too(tmp_path: Path, run_sidecar: RunSidecar) -> None:
    state_file = tmp_path / "state.txt"
    state_file.write_text("42")
    sc = run_sidecar({"plugins": [filestate(state_file, None)]}, RECIPE)
    sc.wait_for(lambda: KEY in pod_annotations(sc), what="the mirror annotation")
    assert json.loads(pod_annotations(sc)[KEY])["storage"] is None
    assert sc.stop() == 0


def test_a_configured_backend_writing_the_same_key_wins(
    tmp_path: Path, run_sidecar: RunSidecar
) -> None:
    state_file = tmp_path / "state.txt"
    state_file.write_text("down")
    journal = tmp_path / "journal.txt"
    same_key = {"type": "InKube", "inKube": {"annotationKey": KEY}}
    recorder = {"name": "tp_recorder", "config": {"journal": str(journal), "interval": 0.1}}
    sc = run_sidecar({"plugins": [filestate(state_file, same_key), recorder]}, RECIPE)
    # The mirror is active in this run (tp_recorder's results are mirrored) ...
    sc.wait_for(
        lambda: "kidecar.io/last-tp_recorder" in pod_annotations(sc), what="recorder mirror"
    )
    sc.wait_for(lambda: KEY in pod_annotations(sc), what="tp_filestate's annotation")
    # ... but on tp_filestate's key InKube's write came later in the plan: the bare state.
    assert pod_annotations(sc)[KEY] == "down"
    state_file.write_text("up")
    sc.wait_for(lambda: pod_annotations(sc)[KEY] == "up", what="InKube's value again")
    assert sc.stop() == 0


def test_annotation_keys_are_valid_for_any_plugin_name() -> None:
    assert mirror.annotation_key("tcp_probe") == "kidecar.io/last-tcp_probe"
    assert mirror.annotation_key("odd name/é") == "kidecar.io/last-odd-name"
    long = mirror.annotation_key("x" * 100)
    assert len(long.split("/", 1)[1]) == 63


def test_the_mirror_value_is_stable_json() -> None:
    result = Result(plugin="p", state="s", storage=StorageConfig("HTTPMetric"), source="a.b")
    assert mirror.mirror(result) == '{"source":"a.b","state":"s","storage":"HTTPMetric"}'


# -- ordering, in-process: the same plugin manager and plan as `kidecar run` ----------------


def plan(recipe: Path, *, recipe_first: bool) -> list[str]:
    """Sources of the writes planned for one InKube result, with ``recipe`` loaded."""
    plugins = Plugins({})
    if recipe_first:  # registered before the backends: pluggy alone would call it last
        plugins.load_file(str(recipe))
        plugins.load_entry_points()
    else:
        plugins.load_entry_points()
        plugins.load_file(str(recipe))
    inkube = plugins.storage_types().types["InKube"].config_class(annotation_key=KEY)
    result = Result(
        plugin="tp_filestate",
        state="down",
        storage=StorageConfig("InKube", {"inKube": inkube}),
        source="plugins[0].config.storageConfig",
    )
    who = PodIdentity("gs-0", "default")
    writes = plugins.persist(result, SimpleNamespace(identity=who))  # type: ignore[arg-type]
    assert all(w.target == ObjectRef.pod(who) for w in writes)
    return [w.source for w in writes]


MIRRORED = "plugins[0].config.storageConfig (mirrored by tryfirst_backend.py)"
INKUBE = "plugins[0].config.storageConfig.inKube.annotationKey"


def test_tryfirst_puts_the_mirror_first_whatever_the_registration_order() -> None:
    recipe = OVERRIDES / RECIPE
    assert plan(recipe, recipe_first=True) == [MIRRORED, INKUBE]
    assert plan(recipe, recipe_first=False) == [MIRRORED, INKUBE]


def test_trylast_would_give_the_mirror_the_last_word(tmp_path: Path) -> None:
    text = (OVERRIDES / RECIPE).read_text()
    assert "@hookimpl(tryfirst=True)" in text
    variant = tmp_path / "trylast_backend.py"
    variant.write_text(text.replace("@hookimpl(tryfirst=True)", "@hookimpl(trylast=True)"))
    assert plan(variant, recipe_first=False) == [INKUBE, MIRRORED]
