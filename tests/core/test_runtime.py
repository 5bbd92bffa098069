"""``kidecar run`` as a real subprocess in local mode, with plugins loaded from entry points."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kidecar_core.testing import Sidecar


def journal(path: Path) -> list[tuple[float, str, str]]:
    """(time, plugin, event) lines written by the test plugins."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        t, plugin, event = line.split(" ", 2)
        out.append((float(t), plugin, event))
    return out


def events(path: Path, plugin: str, event: str) -> list[float]:
    return [t for t, p, e in journal(path) if p == plugin and e == event]


def recorder(jpath: Path, bootorder: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "name": "tp_recorder",
        "bootorder": bootorder,
        "config": {
            "journal": str(jpath),
            "interval": 0.1,
            "storageConfig": {
                "type": "InKube",
                "inKube": {"annotationKey": "test.kidecar.io/last"},
            },
            **extra,
        },
    }


def crasher(jpath: Path, bootorder: int = 0, crash_on_tick: int = 2) -> dict[str, Any]:
    return {
        "name": "tp_crasher",
        "bootOrder": bootorder,
        "config": {"journal": str(jpath), "crashOnTick": crash_on_tick, "interval": 0.05},
    }


@pytest.mark.parametrize(("recorder_order", "crasher_order"), [(0, 5), (5, 0)])
def test_plugins_boot_in_bootorder_not_file_order(
    tmp_path: Path, testplugins_env: dict[str, str], recorder_order: int, crasher_order: int
) -> None:
    jpath = tmp_path / "journal"
    config = {
        "plugins": [
            recorder(jpath, recorder_order),
            crasher(jpath, crasher_order, crash_on_tick=10**9),
        ]
    }
    with Sidecar(tmp_path, config, env=testplugins_env) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: events(jpath, "tp_recorder", "tick 3"), 10, "three ticks")
        assert sc.stop() == 0
    starts = [p for _, p, e in journal(jpath) if e == "start"]
    expected = ["tp_recorder", "tp_crasher"]
    if crasher_order < recorder_order:
        expected.reverse()
    assert starts == expected
    # configure happens before any plugin starts
    lines = journal(jpath)
    first_start = next(i for i, (_, _, e) in enumerate(lines) if e == "start")
    assert all(e != "configure" for _, _, e in lines[first_start:])


def test_results_are_persisted_and_last_write_is_flushed_on_sigterm(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    jpath = tmp_path / "journal"
    with Sidecar(tmp_path, {"plugins": [recorder(jpath)]}, env=testplugins_env) as sc:
        sc.start(wait_ready=True)

        def annotation() -> str:
            return str(sc.state()["pod"]["metadata"]["annotations"].get("test.kidecar.io/last"))

        sc.wait_for(lambda: annotation().startswith("tick-"), 10, "a tick result persisted")
        assert sc.stop(signal.SIGTERM) == 0
        # The plugin emits "stopped" while stopping; it must reach the file before exit.
        assert annotation() == "stopped"
        assert events(jpath, "tp_recorder", "shutdown") > events(jpath, "tp_recorder", "stop")
        assert "kidecar stopped" in sc.log()
        assert "Traceback" not in sc.log()


def test_sigint_also_stops_gracefully(tmp_path: Path, testplugins_env: dict[str, str]) -> None:
    jpath = tmp_path / "journal"
    with Sidecar(tmp_path, {"plugins": [recorder(jpath)]}, env=testplugins_env) as sc:
        sc.start(wait_ready=True)
        assert sc.stop(signal.SIGINT) == 0
    assert events(jpath, "tp_recorder", "stop")


def test_crashing_plugin_is_restarted_with_backoff_while_others_run(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    jpath = tmp_path / "journal"
    config = {"restartpolicy": "Always", "plugins": [crasher(jpath), recorder(jpath, 1)]}
    with Sidecar(tmp_path, config, env=testplugins_env) as sc:
        sc.start()
        sc.wait_for(lambda: len(events(jpath, "tp_crasher", "start")) >= 4, 20, "3 restarts")
        crashes = events(jpath, "tp_crasher", "crash")
        # The backoff before each restart grows: read from the log (the delay chosen), not from
        # the clock (how long it took here, which depends on the machine's load).
        delays = [
            float(m) for m in re.findall(r"restarting plugin tp_crasher in ([0-9.]+)s", sc.log())
        ]
        assert len(delays) >= 3
        assert delays[0] <= delays[1] <= delays[2] and delays[0] < delays[2], delays
        # Meanwhile the other plugin kept ticking, crash after crash.
        ticks = events(jpath, "tp_recorder", "tick 1") + [
            t for t, p, e in journal(jpath) if p == "tp_recorder" and e.startswith("tick")
        ]
        assert any(crashes[0] < t < crashes[-1] for t in ticks)
        restarts = sc.metric("kidecar_plugin_restarts_total", {"plugin": "tp_crasher"})
        assert restarts is not None and restarts >= 2
        assert sc.metric("kidecar_results_total", {"plugin": "tp_recorder"})
        assert sc.metric("kidecar_tick_duration_seconds_count", {"plugin": "tp_recorder"})
        assert "tp_crasher crashes on purpose" in sc.log()
        assert sc.stop() == 0


def test_never_policy_leaves_the_plugin_down_and_not_ready(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    jpath = tmp_path / "journal"
    config = {"restartPolicy": "Never", "plugins": [crasher(jpath), recorder(jpath, 1)]}
    with Sidecar(tmp_path, config, env=testplugins_env) as sc:
        sc.start()
        sc.wait_for(lambda: events(jpath, "tp_crasher", "crash"), 10, "the crash")
        sc.wait_for(lambda: sc.get("/readyz")[0] == 503, 15, "/readyz to fail")
        ready = sc.readyz()
        assert ready["plugins"]["tp_crasher"]["status"] == "failed"
        assert "crashes on purpose" in ready["plugins"]["tp_crasher"]["error"]
        assert ready["plugins"]["tp_recorder"]["status"] == "running"
        ticks_before = len([e for _, p, e in journal(jpath) if p == "tp_recorder"])
        sc.wait_for(
            lambda: len([e for _, p, e in journal(jpath) if p == "tp_recorder"]) > ticks_before + 3,
            10,
            "the recorder to keep ticking",
        )
        assert len(events(jpath, "tp_crasher", "start")) == 1
        assert sc.get("/healthz")[0] == 200
        assert sc.stop() == 0


def test_admin_endpoints(tmp_path: Path, testplugins_env: dict[str, str]) -> None:
    jpath = tmp_path / "journal"
    with Sidecar(tmp_path, {"plugins": [recorder(jpath)]}, env=testplugins_env) as sc:
        sc.start(wait_ready=True)
        assert sc.get("/healthz") == (200, '{"status": "ok"}')
        ready = sc.readyz()
        assert ready["ready"] is True
        assert ready["plugins"]["tp_recorder"]["status"] == "running"
        assert ready["persistence"]["store"].startswith("local state file")
        status, body = sc.get("/metrics")
        assert status == 200
        assert "kidecar_plugin_up" in body
        assert "kidecar_persist_writes_total" in body
        assert sc.get("/nope")[0] == 404
        assert sc.stop() == 0


def test_local_state_file_is_created_with_pod_and_gameserver(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    with Sidecar(tmp_path, {"plugins": []}, env=testplugins_env, pod_name="gs-7") as sc:
        sc.start(wait_ready=True)
        state = sc.state()
        assert state["pod"]["metadata"]["name"] == "gs-7"
        assert state["gameserver"]["metadata"]["name"] == "gs-7"
        assert state["gameserver"]["spec"]["opsState"] == "None"
        assert "no plugins configured" in sc.log()
        assert sc.stop() == 0


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kidecar_core", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def test_run_without_a_cluster_says_how_to_choose(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("plugins: []\n")
    for pod_env in ({"POD_NAME": "p", "POD_NAMESPACE": "ns"}, {}):
        env = {k: v for k, v in testplugins_env.items() if not k.startswith("POD_")}
        proc = run_cli("run", "--config", str(cfg), env={**env, **pod_env})
        assert proc.returncode == 1
        assert "no cluster to talk to" in proc.stderr
        assert "--local-state" in proc.stderr and "--kubeconfig" in proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--log-level", "loud"], {}, "invalid choice: 'LOUD'"),
        (["--shutdown-timeout", "soon"], {}, "expected a number of seconds"),
        (["--resync-seconds", "0"], {}, "must be > 0"),
        ([], {"KIDECAR_SHUTDOWN_TIMEOUT": "soon"}, "KIDECAR_SHUTDOWN_TIMEOUT: expected a number"),
        ([], {"KIDECAR_LOG_LEVEL": "loud"}, "KIDECAR_LOG_LEVEL: must be one of"),
    ],
)
def test_bad_run_options_are_clear_errors(
    tmp_path: Path, testplugins_env: dict[str, str], args: list[str], env: dict[str, str],
    expected: str,
) -> None:  # fmt: skip
    cfg = tmp_path / "c.yaml"
    cfg.write_text("plugins: []\n")
    proc = run_cli(
        "run", "--config", str(cfg), "--local-state", str(tmp_path / "s.json"), *args,
        env={**testplugins_env, **env},
    )  # fmt: skip
    assert proc.returncode in (1, 2)
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_with_invalid_config_exits_2_before_starting(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("plugins:\n  - name: tp_recorder\n    config: {journal: 5, interval: -1x}\n")
    proc = run_cli("run", "--config", str(cfg), "--local-state", str(tmp_path / "s.json"),
                   env=testplugins_env)  # fmt: skip
    assert proc.returncode == 2
    assert "plugins[0].config.interval: expected a number" in proc.stderr
    assert not (tmp_path / "s.json").exists()


def test_check_config_reports_every_problem_with_paths(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "plugins:\n"
        "  - name: tp_recorder\n"
        "    bootorder: first\n"
        "    config: {journal: j, intervall: 1}\n"
        "  - name: tp_missing\n"
        "restartPolicy: Sometimes\n"
        "sidecarstartorder: Before\n"
        "pluginz: []\n"
    )
    proc = run_cli("check-config", str(cfg), env=testplugins_env)
    assert proc.returncode == 2, proc
    err = proc.stderr
    assert "plugins[0].bootorder: expected an integer, got a string" in err
    assert "plugins[1].name: plugin 'tp_missing' is not installed; installed:" in err
    assert "tp_recorder" in err.split("installed:")[1]
    assert "pip install kidecar-tp-missing" in err
    assert "restartPolicy: must be one of Always, OnFailure, Never; got 'Sometimes'" in err
    assert "pluginz: unknown key (did you mean 'plugins'?)" in err
    assert "Traceback" not in err


def test_check_config_ok(tmp_path: Path, testplugins_env: dict[str, str]) -> None:
    jpath = tmp_path / "journal"
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"plugins": [recorder(jpath, 3), crasher(jpath, 1)]}))
    proc = run_cli("check-config", str(cfg), env=testplugins_env)
    assert proc.returncode == 0, proc.stderr
    assert "OK (plugins in boot order: tp_crasher, tp_recorder)" in proc.stdout


def test_plugins_lists_entry_point_plugins(testplugins_env: dict[str, str]) -> None:
    proc = run_cli("plugins", env=testplugins_env)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert "kidecar-testplugins 1.0.0" in rows["tp_recorder"]
    assert "config_schema" in rows["tp_recorder"] and "tick" in rows["tp_recorder"]
    assert "service" in rows["tp_recorder"]
    assert "inkube" in rows and "extension" in rows["inkube"]


def test_allow_and_deny_lists(tmp_path: Path, testplugins_env: dict[str, str]) -> None:
    env = {**testplugins_env, "KIDECAR_DISABLE_PLUGINS": "tp_crasher"}
    proc = run_cli("plugins", env=env)
    assert "tp_crasher" in proc.stdout and "disabled" in proc.stdout
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"plugins:\n  - name: tp_crasher\n    config: {{journal: {tmp_path / 'j'}}}\n")
    proc = run_cli("check-config", str(cfg), env=env)
    assert proc.returncode == 2
    assert "installed but disabled" in proc.stderr
    env = {**testplugins_env, "KIDECAR_PLUGINS": "tp_crasher,inkube"}
    proc = run_cli("plugins", env=env)
    listed = {line.split()[0] for line in proc.stdout.splitlines()[1:] if "disabled" not in line}
    assert listed == {"tp_crasher", "inkube"}


def test_version_and_module_entry(testplugins_env: dict[str, str]) -> None:
    proc = run_cli("--version", env=testplugins_env)
    assert proc.returncode == 0
    assert proc.stdout.startswith("kidecar ")


def test_plugins_lists_override_files(testplugins_env: dict[str, str]) -> None:
    recipe = Path(__file__).resolve().parents[2] / "contrib" / "overrides" / "audit_jsonl.py"
    proc = run_cli("plugins", "--plugin-file", str(recipe), env=testplugins_env)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("file:audit_jsonl"))
    assert "(local file)" in row and "on_result" in row
