"""Failures are never silent: each one below gives one clear log line or exit code.

(a) a bad write from an override is logged with its source and dropped, the pipeline goes on;
(b) a misspelled hook in an override file stops the start, naming the file and the hook;
(c) an exception in ``kidecar_shutdown`` is logged, the stop goes on;
(d) a plugin that fails to import is reported as broken, with its import error.
Plus ``KIDECAR_TRACE_HOOKS=1``, which logs every hook call.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from kidecar_core import ObjectRef, PodIdentity, Result, Write
from kidecar_core._persist.plan import WritePlan
from kidecar_core.testing import Sidecar

ANNOTATION = "test.kidecar.io/last"


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kidecar_core", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def recorder(tmp_path: Path) -> dict[str, Any]:
    return {
        "name": "tp_recorder",
        "config": {
            "journal": str(tmp_path / "journal"),
            "interval": 0.1,
            "storageConfig": {"type": "InKube", "inKube": {"annotationKey": ANNOTATION}},
        },
    }


def override(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(
        "from kidecar_core import ObjectRef, Write, hookimpl\n\n" + textwrap.dedent(body)
    )
    return path


# -- (a) a bad write --------------------------------------------------------------------------


def test_kidecar_persist_bad_write_is_logged_with_its_source_and_the_pipeline_goes_on(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    bad = override(
        tmp_path,
        "bad_write",
        """
        @hookimpl
        def kidecar_persist(result, runtime):
            pod = ObjectRef.pod(runtime.identity)
            return [Write(pod, ["not", "a", "mapping"], source="overrides.bad_write")]
        """,
    )
    with Sidecar(
        tmp_path, {"plugins": [recorder(tmp_path)]}, env=testplugins_env,
        extra_args=["--plugin-file", str(bad)],
    ) as sc:  # fmt: skip
        sc.start(wait_ready=True)

        def last() -> str:
            return str(sc.annotations().get(ANNOTATION))

        # Every result carries the bad write, and the recorder's own writes still land, tick
        # after tick: the pipeline did not stop at the first bad write.
        sc.wait_for(lambda: last().startswith("tick-"), 20, "a first result persisted")
        first = last()
        sc.wait_for(lambda: last() not in (first, "None"), 20, "a later result persisted")
        assert sc.stop() == 0
    log = sc.log()
    assert (
        "dropped a write for a result of tp_recorder (source: overrides.bad_write): "
        "Write.patch must be a mapping (a merge patch), got list" in log
    )
    assert "Traceback" not in log


def test_write_plan_keeps_good_writes_and_names_each_bad_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pod = ObjectRef.pod(PodIdentity("gs-0", "default"))
    good = Write(pod, {"metadata": {"labels": {"a": "b"}}}, source="plugins[0]")
    result = Result(plugin="tp", state="s")
    contributions: list[object] = [
        [good, "not a write", Write(pod, 5, source="x")],  # type: ignore[arg-type]
        None,
        {"a": "dict"},
        [Write("pod", {}, source="y")],  # type: ignore[arg-type]
        [Write(pod, {1: "x"}, source="z")],  # type: ignore[dict-item]
    ]
    plan = WritePlan.collect(result, contributions)
    assert plan.writes == [good] and len(plan) == 1
    assert [(r.source, r.reason.split(",")[0]) for r in plan.rejected] == [
        ("no source given", "expected a Write"),
        ("x", "Write.patch must be a mapping (a merge patch)"),
        ("no source given", "a kidecar_persist answer must be a list of Writes"),
        ("y", "Write.target must be an ObjectRef"),
        ("z", "Write.patch keys must be strings"),
    ]
    assert caplog.text.count("dropped a write for a result of tp") == 5


# -- (b) a misspelled hook ---------------------------------------------------------------------


def test_a_typo_in_an_override_hook_name_is_a_startup_error(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    typo = override(
        tmp_path,
        "typo",
        """
        @hookimpl
        def kidecar_persit(result, runtime):
            return None
        """,
    )
    config = tmp_path / "config.yaml"
    config.write_text("plugins: []\n")
    for command in (
        ["run", "--config", str(config), "--local-state", str(tmp_path / "s.json")],
        ["check-config", str(config)],
    ):
        proc = run_cli(*command, "--plugin-file", str(typo), env=testplugins_env)
        assert proc.returncode == 1, proc
        expected = f"plugin file {typo}: kidecar_persit is not a kidecar hook"
        assert f"{expected}; did you mean kidecar_persist?" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "s.json").exists()


# -- (c) a failing kidecar_shutdown ------------------------------------------------------------


SHUTDOWN_FAILURES = {
    "raising": (
        """
        @hookimpl
        def kidecar_shutdown(runtime):
            raise RuntimeError("shutdown hook broken on purpose")
        """,
        "shutdown: kidecar_shutdown failed: RuntimeError: shutdown hook broken on purpose",
    ),
    "awaitable": (
        """
        async def _fail():
            raise ValueError("awaited shutdown broken on purpose")

        @hookimpl
        def kidecar_shutdown(runtime):
            return _fail()
        """,
        "kidecar_shutdown implementation failed: awaited shutdown broken on purpose",
    ),
}


@pytest.mark.parametrize("case", sorted(SHUTDOWN_FAILURES))
def test_kidecar_shutdown_failures_are_logged_and_the_stop_goes_on(
    tmp_path: Path, testplugins_env: dict[str, str], case: str
) -> None:
    body, line = SHUTDOWN_FAILURES[case]
    hook = override(tmp_path, case, body)
    with Sidecar(
        tmp_path / "sidecar", {"plugins": [recorder(tmp_path)]}, env=testplugins_env,
        extra_args=["--plugin-file", str(hook)],
    ) as sc:  # fmt: skip
        sc.start(wait_ready=True)
        sc.wait_for(lambda: str(sc.annotations().get(ANNOTATION)).startswith("tick-"), 20)
        assert sc.stop() == 0
        # The result the plugin emits while stopping is flushed all the same.
        assert sc.annotations()[ANNOTATION] == "stopped"
    log = sc.log()
    assert line in log
    assert "kidecar stopped" in log


# -- (d) a plugin that fails to import ---------------------------------------------------------


def broken_distribution(site: Path) -> None:
    """A distribution whose ``kidecar`` entry point names a module that cannot be imported."""
    info = site / "kidecar_broken-2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kidecar-broken\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[kidecar]\ntp_broken = kidecar_broken_plugin\n")
    (site / "kidecar_broken_plugin.py").write_text("import kidecar_dependency_not_installed\n")


def test_a_plugin_that_fails_to_import_is_reported_as_broken(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    site = tmp_path / "site"
    broken_distribution(site)
    env = {**testplugins_env, "PYTHONPATH": f"{site}:{testplugins_env.get('PYTHONPATH', '')}"}
    config = tmp_path / "config.yaml"
    config.write_text("plugins:\n  - name: tp_broken\n")
    proc = run_cli("check-config", str(config), env=env)
    assert proc.returncode == 2, proc
    assert (
        "plugins[0].name: plugin 'tp_broken' is installed but broken: kidecar-broken 2.0 failed "
        "to import: ModuleNotFoundError: No module named 'kidecar_dependency_not_installed'"
    ) in proc.stderr
    assert "pip install" not in proc.stderr and "Traceback" not in proc.stderr
    listing = run_cli("plugins", env=env)
    assert listing.returncode == 0
    row = next(line for line in listing.stdout.splitlines() if line.startswith("tp_broken"))
    assert "broken: kidecar-broken 2.0 failed to import: ModuleNotFoundError" in row


# -- tracing -----------------------------------------------------------------------------------


def test_kidecar_trace_hooks_logs_every_hook_call(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    env = {**testplugins_env, "KIDECAR_TRACE_HOOKS": "1"}
    with Sidecar(tmp_path, {"plugins": [recorder(tmp_path)]}, env=env) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: "kidecar_persist [hook]" in sc.log(), 20, "a traced persist")
        assert sc.stop() == 0
    log = sc.log()
    for hook in ("kidecar_configure", "kidecar_start", "kidecar_tick", "kidecar_shutdown"):
        assert f"{hook} [hook]" in log, hook


# -- a start that fails half-way -----------------------------------------------------------------


def test_a_start_that_fails_half_way_tears_down_only_what_started(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    """The admin address is taken: the servers do not start, so no plugin starts, and no plugin
    is stopped or told about a shutdown; what did start (the store, the pipeline) is closed."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({"plugins": [recorder(tmp_path)]}))
        proc = run_cli(
            "run", "--config", str(config), "--local-state", str(tmp_path / "state.json"),
            "--admin-listen", f"127.0.0.1:{port}", "--log-format", "text",
            env=testplugins_env,
        )  # fmt: skip
    assert proc.returncode == 1, proc
    assert f"cannot listen on 127.0.0.1:{port} for admin" in proc.stderr
    assert "Traceback" not in proc.stderr and "shutdown:" not in proc.stderr
    journal = tmp_path / "journal"
    events = journal.read_text().split() if journal.exists() else []
    assert "configure" in events  # configured before the servers ...
    assert not {"start", "stop", "shutdown"} & set(events)  # ... and nothing after
