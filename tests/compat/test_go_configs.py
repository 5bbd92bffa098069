"""Every config of the Go predecessor's docs and demos (tests/compat/go_configs/, each with its
source in a comment) loads with the real loader, and its writes land where the Go version put
them.

The Go semantics, from its ``pkg/store/in_kube.go`` (magicsong/kruise-game-sidecar @ 8a1a219):
``annotationKey``/``labelKey`` and a state's policy ``labels``/``annotations`` go to the **Pod**
(pod-deletion-cost and label selectors work there); ``gameServerOpsState`` is the GameServer's
``spec.opsState`` (the docs' promise; the Go code never actually wrote it, a known defect);
``jsonPath`` and ``jsonPathConfigs`` go to the ``target`` (default: the pod's GameServer).

Three checks per config: it loads (or fails for a reason that holds for the Go version too: the
YAML itself is broken); the real ``kidecar_persist`` hooks turn each of its states into writes on
the right objects; and the http_probe ones run for real in local mode against a game HTTP server
(only the endpoint URL changed), driven through every state of their policies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from kidecar_core import ConfigError, ObjectRef, PodIdentity, Result
from kidecar_core._config.catalog import load_file
from kidecar_core._config.loader import LoadedConfig
from kidecar_core._persist.applier import flatten
from kidecar_core._persist.precedence import OpsStatePrecedence
from kidecar_core._plugins.manager import Plugins
from kidecar_core.testing import FakeContext, Sidecar
from tests.plugins.http_probe.game import GameHTTP

CONFIGS = Path(__file__).parent / "go_configs"
WHO = PodIdentity("gs-0", "default")
ENV = {"POD_NAME": WHO.name, "POD_NAMESPACE": WHO.namespace}
POD, GS = ObjectRef.pod(WHO), ObjectRef.gameserver(WHO)

BINARY = (
    "plugins[].binary (run an executable as a plugin, magicsong/kidecar only; dropped by "
    "kruise-game-sidecar) is not implemented in kidecar, and no issue asks for it"
)


@attrs.frozen
class Expect:
    """What loading a fixture gives: its plugins in boot order, or the error it must report."""

    plugins: tuple[str, ...] = ()
    error: str = ""
    xfail: str = ""


EXPECT: dict[str, Expect] = {
    "kgs-readme-hot-update.yaml": Expect(("hot_update",)),
    "kgs-probe.yaml": Expect(("http_probe",)),
    "kgs-hot-update.yaml": Expect(("hot_update",)),
    "kgs-hot-update-request-mode.yaml": Expect(("hot_update",)),
    "okg-pr191-probe.yaml": Expect(("http_probe",)),
    "okg-pr191-demo.yaml": Expect(("hot_update", "http_probe")),
    "kidecar-config.yaml": Expect(("kubectl-proxy", "http_probe"), xfail=BINARY),
    "kidecar-config-2024-09.yaml": Expect(("http_probe", "hot_update")),
    "kidecar-examples-hot-update.yaml": Expect(("hot_update",)),
    "kidecar-demo-probe.yaml": Expect(("kubectl-proxy", "http_probe"), xfail=BINARY),
    "kidecar-demo-probe-2024-10.yaml": Expect(("http_probe", "hot_update")),
    "kidecar-demo-sidecarconfig.yaml": Expect(("hot_update",)),
    "kruise-kep-hot-update.yaml": Expect(("hot_update",)),
    # Broken in the source: no YAML parser (the Go version's sigs.k8s.io/yaml included) reads them.
    "kruise-kep-combined.yaml": Expect(error="not valid YAML (line 36, column 22)"),
    "kruise-kep-probe.yaml": Expect(error="not valid YAML (line 24, column 22)"),
    "kruise-kep-storage-sketch.yaml": Expect(error="not valid YAML (line 19, column 9)"),
}


def fixtures() -> list[str]:
    return sorted(p.name for p in CONFIGS.glob("*.yaml"))


def params(names: list[str], reasons: Mapping[str, str]) -> list[Any]:
    marks = {n: pytest.mark.xfail(strict=True, reason=r) for n, r in reasons.items() if r}
    return [pytest.param(n, marks=marks[n]) if n in marks else n for n in names]


def load_fixture(name: str) -> LoadedConfig:
    return load_file(str(CONFIGS / name), Plugins.load(ENV), ENV, lenient=False)


def raw(name: str) -> Any:
    return yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))


def test_every_fixture_names_its_source_and_has_an_expectation() -> None:
    assert sorted(EXPECT) == fixtures()
    for name in fixtures():
        head = (CONFIGS / name).read_text(encoding="utf-8").split("\nplugins:", 1)[0]
        assert re.search(r"^# repo: +https://github\.com/[\w.-]+/[\w.-]+$", head, re.M), name
        assert re.search(r"^# path: +\S", head, re.M), name
        assert re.search(r"^# commit: +[0-9a-f]{40}$", head, re.M), name


@pytest.mark.parametrize(
    "name",
    params([n for n in fixtures() if not EXPECT[n].error], {n: e.xfail for n, e in EXPECT.items()}),
)
def test_the_config_loads_unchanged(name: str) -> None:
    loaded = load_fixture(name)
    assert tuple(p.name for p in loaded.boot_sequence()) == EXPECT[name].plugins


@pytest.mark.parametrize("name", [n for n in fixtures() if EXPECT[n].error])
def test_a_config_broken_at_its_source_gets_a_clear_error(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_fixture(name)
    (problem,) = caught.value.problems
    assert EXPECT[name].error in problem.message
    assert "Traceback" not in problem.message


# -- where the writes land ----------------------------------------------------------------------


def inkube_configs(config: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(plugin, inKube)`` of every storageConfig in a raw (parsed YAML) config."""
    plugins = config["plugins"]
    entries = plugins.values() if isinstance(plugins, dict) else plugins
    for entry in entries:
        plugin_config = entry.get("config") or {}
        storages = [e.get("storageConfig") for e in plugin_config.get("endpoints", [])]
        storages.append(plugin_config.get("storageConfig"))
        for storage in storages:
            if storage and storage.get("inKube"):
                yield entry["name"], storage["inKube"]


def go_writes(inkube: Mapping[str, Any], state: str) -> dict[str, dict[tuple[str, ...], Any]]:
    """Where the Go version put a state's values: ``{"pod"|"target": {path: value}}``."""
    out: dict[str, dict[tuple[str, ...], Any]] = {"pod": {}, "target": {}, "pod-policy": {}}
    if inkube.get("annotationKey"):
        out["pod"][("metadata", "annotations", inkube["annotationKey"])] = state
    if inkube.get("labelKey"):
        out["pod"][("metadata", "labels", inkube["labelKey"])] = state
    if inkube.get("jsonPath"):
        out["target"][pointer(inkube["jsonPath"])] = state
    for policy in inkube.get("markerPolices") or inkube.get("markerPolicies") or []:
        if policy["state"] != state:
            continue
        if policy.get("gameServerOpsState"):
            out["target"][("spec", "opsState")] = policy["gameServerOpsState"]
        for kind in ("labels", "annotations"):
            for key, value in (policy.get(kind) or {}).items():
                out["pod-policy"][("metadata", kind, key)] = value
        for jp in policy.get("jsonPathConfigs") or []:
            out["target"][pointer(jp["jsonPath"])] = jp["value"]
    return out


def pointer(text: str) -> tuple[str, ...]:
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in text.strip("/").split("/"))


def states(inkube: Mapping[str, Any]) -> list[str]:
    policies = inkube.get("markerPolices") or inkube.get("markerPolicies") or []
    return [str(p["state"]) for p in policies] or ["result"]


def kidecar_writes(loaded: LoadedConfig, plugin: str, state: str) -> dict[ObjectRef, Any]:
    """The leaves the real persist hooks write for ``state`` of ``plugin``'s storage config."""
    entry = next(p for p in loaded.plugins if p.name == plugin)
    config = entry.config
    storages = [e.storage_config for e in getattr(config, "endpoints", ())]
    storages.append(getattr(config, "storage_config", None))
    plugins = Plugins.load(ENV)
    view = FakeContext(identity=WHO)
    leaves: dict[ObjectRef, dict[tuple[str, ...], Any]] = {}
    for storage in (s for s in storages if s is not None):
        result = Result(plugin, state, storage=storage, source=f"{entry.path}.config")
        writes = OpsStatePrecedence().resolve(result, plugins.persist(result, view).writes)
        for w in writes:
            leaves.setdefault(w.target, {}).update(flatten(w.patch))
    return leaves


def write_cases(policy_metadata: bool) -> list[Any]:
    cases: list[Any] = []
    for name in fixtures():
        expect = EXPECT[name]
        if expect.error:
            continue
        for plugin, inkube in inkube_configs(raw(name)):
            for state in states(inkube):
                reason = expect.xfail
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                cases.append(pytest.param(name, plugin, state, marks=marks, id=f"{name}-{state}"))
    return cases


def target_of(inkube: Mapping[str, Any]) -> ObjectRef:
    target = inkube.get("target")
    if not target:
        return GS
    return ObjectRef(
        target.get("group", ""),
        target["version"],
        target["resource"],
        WHO.namespace,
        WHO.name,
    )


def the_inkube(name: str, plugin: str, state: str) -> Mapping[str, Any]:
    return next(i for p, i in inkube_configs(raw(name)) if p == plugin and state in states(i))


@pytest.mark.parametrize(("name", "plugin", "state"), write_cases(policy_metadata=False))
def test_state_keys_ops_state_and_json_paths_land_where_go_wrote_them(
    name: str, plugin: str, state: str
) -> None:
    inkube = the_inkube(name, plugin, state)
    wanted = go_writes(inkube, state)
    got = kidecar_writes(load_fixture(name), plugin, state)
    assert wanted["pod"].items() <= got.get(POD, {}).items()
    assert wanted["target"].items() <= got.get(target_of(inkube), {}).items()


@pytest.mark.parametrize(("name", "plugin", "state"), write_cases(policy_metadata=True))
def test_policy_labels_and_annotations_land_on_the_pod(name: str, plugin: str, state: str) -> None:
    wanted = go_writes(the_inkube(name, plugin, state), state)["pod-policy"]
    got = kidecar_writes(load_fixture(name), plugin, state)
    assert wanted.items() <= got.get(POD, {}).items()


# -- http_probe configs, run for real -----------------------------------------------------------


def probe_cases() -> list[Any]:
    """The fixtures with an http_probe entry (run alone: see :func:`run_config`)."""
    return [
        n
        for n in fixtures()
        if not EXPECT[n].error and any(p == "http_probe" for p, _ in inkube_configs(raw(n)))
    ]


def run_config(name: str, url: str) -> dict[str, Any]:
    """The fixture as run here: the endpoint URL pointed at the test's game and the timing made
    fast (no start delay, a probe every 0.1 s); other plugins left out (hot_update would listen
    on :5000 and write to /app/downloads; a ``binary`` entry is not supported, see
    :data:`BINARY`).  Everything else as the fixture has it."""
    config = raw(name)
    plugins = config["plugins"]
    if isinstance(plugins, dict):
        config["plugins"] = {k: v for k, v in plugins.items() if v.get("name", k) == "http_probe"}
        entries = list(config["plugins"].values())
    else:
        config["plugins"] = entries = [p for p in plugins if p["name"] == "http_probe"]
    for entry in entries:
        timing = {"startdelayseconds", "probeintervalseconds"}
        probe = {k: v for k, v in entry["config"].items() if k.lower() not in timing}
        entry["config"] = {**probe, "startDelaySeconds": 0, "probeIntervalSeconds": 0.1}
        for endpoint in entry["config"]["endpoints"]:
            endpoint["url"] = url
    return config


@pytest.mark.parametrize("name", probe_cases())
def test_http_probe_configs_drive_the_pod_and_gameserver_in_local_mode(
    name: str, tmp_path: Path
) -> None:
    (inkube,) = [i for p, i in inkube_configs(raw(name)) if p == "http_probe"]
    sequence = [*states(inkube), states(inkube)[0]]
    with GameHTTP() as game:
        game.set("/", sequence[0])
        with Sidecar(tmp_path, run_config(name, game.url("/")), env=ENV) as sc:
            sc.start(wait_ready=True)
            for state in sequence:
                game.set("/", state)
                wanted = go_writes(inkube, state)
                sc.wait_for(lambda w=wanted: holds(sc, w), 10, f"the writes of {state!r}")
            assert sc.stop() == 0


def holds(sc: Sidecar, wanted: Mapping[str, Mapping[tuple[str, ...], Any]]) -> bool:
    objects = sc.state()
    for where, key in (("pod", "pod"), ("target", "gameserver")):
        for path, value in wanted[where].items():
            node: Any = objects[key]
            for part in path:
                node = node.get(part, {}) if isinstance(node, dict) else {}
            if node != value:
                return False
    return True
