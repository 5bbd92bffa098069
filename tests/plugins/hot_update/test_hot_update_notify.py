"""Process matching and signalling against real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kidecar_plugins.hot_update import notify, process_hint
from kidecar_plugins.hot_update.config import SignalConfig
from kidecar_plugins.hot_update.errors import UpdateError
from kidecar_plugins.hot_update.notify import (
    Candidate,
    SignalNotifier,
    UpdateInfo,
    catches_signal,
    command_line,
    find_processes,
    own_process_tree,
)
from tests.plugins.hot_update.fileserver import wait_until
from tests.plugins.hot_update.harness import Game

INFO = UpdateInfo("v1", "http://h/f", "/d/f", "0" * 64)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nginx: master process nginx", "", "", ""], "nginx: master process nginx"),
        (["/usr/bin/game", "--port", "7777"], "/usr/bin/game --port 7777"),
        (["/usr/bin/game", "", "--x"], "/usr/bin/game --x"),
        (["a b", "c"], "a b c"),
        (["worker   "], "worker"),
        ([], ""),
    ],
)
def test_command_line_as_ps_shows_it(args: list[str], expected: str) -> None:
    assert command_line(args) == expected


@pytest.fixture
def game(tmp_path: Path) -> Iterator[Game]:
    g = Game(tmp_path, tmp_path / "file", detached=True).start()
    yield g
    g.stop()


def test_rewritten_title_with_nul_padding_matches_exactly(game: Game) -> None:
    raw = Path(f"/proc/{game.pid}/cmdline").read_bytes()
    assert raw.startswith(game.title.encode() + b"\0\0"), "the title is NUL-padded like nginx's"
    found, _ = find_processes(lambda c: c == game.title)
    assert [c.pid for c in found] == [game.pid]


def test_signal_reaches_the_game_and_only_it(game: Game, tmp_path: Path) -> None:
    other = Game(tmp_path, tmp_path / "other", detached=True).start()
    try:
        notifier = SignalNotifier(SignalConfig(process_name=game.title))
        done = asyncio.run(notifier.notify(INFO))
        assert done == f"sent SIGHUP to pid {game.pid}"
        wait_until(lambda: game.signals() == ["SIGHUP"], 15, "the signal")
        assert other.signals() == []
    finally:
        other.stop()


def test_never_pid_1_nor_the_sidecar_itself() -> None:
    mine = command_line(Path(f"/proc/{os.getpid()}/cmdline").read_text().split("\0"))
    excluded = own_process_tree()
    assert {1, os.getpid(), os.getppid()} <= excluded
    found, _ = find_processes(lambda c: True)
    pids = {c.pid for c in found}
    assert 1 not in pids and os.getpid() not in pids and os.getppid() not in pids
    assert not find_processes(lambda c: c == mine)[0]


def test_children_of_the_sidecar_are_never_signalled() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "kidecar-child"])
    try:
        found, _ = find_processes(lambda c: c.endswith("kidecar-child"))
        assert found == []
    finally:
        child.kill()
        child.wait()


def test_missing_process_is_503_with_the_share_process_namespace_hint() -> None:
    notifier = SignalNotifier(SignalConfig(process_name="no such game process"))
    with pytest.raises(UpdateError) as e:
        asyncio.run(notifier.ready())
    assert e.value.status == 503
    assert "shareProcessNamespace" in e.value.message


def test_game_that_exited_between_match_and_kill_is_503(game: Game) -> None:
    notifier = SignalNotifier(SignalConfig(process_name=game.title))
    asyncio.run(notifier.ready())
    game.stop()
    with pytest.raises(UpdateError) as e:
        asyncio.run(notifier.notify(INFO))
    assert e.value.status == 503


def test_a_known_game_is_signalled_without_a_new_scan(
    game: Game, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans: list[int] = []

    def counting(matches: Callable[[str], bool]) -> tuple[list[Candidate], list[str]]:
        scans.append(1)
        return find_processes(matches)

    monkeypatch.setattr(notify, "find_processes", counting)
    notifier = SignalNotifier(SignalConfig(process_name=game.title))
    asyncio.run(notifier.ready())
    assert asyncio.run(notifier.notify(INFO)) == f"sent SIGHUP to pid {game.pid}"
    # One at a time: two SIGHUPs pending at once are delivered as one.
    wait_until(lambda: game.signals() == ["SIGHUP"], 15, "the first signal")
    assert asyncio.run(notifier.notify(INFO)) == f"sent SIGHUP to pid {game.pid}"
    wait_until(lambda: game.signals() == ["SIGHUP", "SIGHUP"], 15, "the second signal")
    assert len(scans) == 1


def test_a_restarted_game_is_found_again(game: Game, tmp_path: Path) -> None:
    notifier = SignalNotifier(SignalConfig(process_name=game.title))
    asyncio.run(notifier.ready())
    game.stop()
    again = Game(tmp_path, tmp_path / "again", title=game.title, detached=True).start()
    try:
        assert asyncio.run(notifier.notify(INFO)) == f"sent SIGHUP to pid {again.pid}"
        wait_until(lambda: again.signals() == ["SIGHUP"], 15, "the signal")
    finally:
        again.stop()


def test_catches_signal_reads_sigcgt(game: Game, tmp_path: Path) -> None:
    assert catches_signal(game.pid, signal.SIGHUP) is True
    assert catches_signal(game.pid, signal.SIGWINCH) is False
    starting = Game(tmp_path, tmp_path / "f2", handler_delay=30, detached=True)
    starting.start(wait_ready=False)
    try:
        assert catches_signal(starting.pid, signal.SIGHUP) is False
        with pytest.raises(UpdateError) as e:
            asyncio.run(SignalNotifier(SignalConfig(process_name=starting.title)).ready())
        assert e.value.reason == "game does not handle the signal"
    finally:
        starting.stop()
    assert catches_signal(2**22, signal.SIGHUP) is None


def test_a_process_name_that_names_only_the_binary_gets_a_hint(tmp_path: Path) -> None:
    """Go configs name the binary (Go matched a substring); kidecar never does, but the failure
    lists the closest command lines (secrets masked) and the processNameRegex to use."""
    title = "/opt/game/bin/gameserver --port 7777 --password=hunter2-secret"
    game = Game(tmp_path, tmp_path / "f", title=title, detached=True).start()
    try:
        with pytest.raises(UpdateError) as e:
            asyncio.run(SignalNotifier(SignalConfig(process_name="gameserver")).ready())
        message = e.value.message
        assert e.value.status == 503
        assert "closest command lines: '/opt/game/bin/gameserver --port 7777 --password=***'" in (
            message
        )
        assert "hunter2" not in message
        suggested = process_hint.binary_regex("gameserver")
        assert f"processNameRegex: true and processName: '{suggested}'" in message
        assert game.signals() == [], "never a substring match"
        # Following the hint works, and matches only the game.
        fixed = SignalNotifier(SignalConfig(process_name=suggested, process_name_regex=True))
        assert "sent SIGHUP" in asyncio.run(fixed.notify(INFO))
        wait_until(lambda: game.signals() == ["SIGHUP"], 15, "the SIGHUP")
    finally:
        game.stop()


@pytest.mark.parametrize(
    ("name", "cmdlines", "expected"),
    [
        ("game", ["/usr/bin/game -x", "sleep 1", "/bin/sh -c game", "gamer"],
         ["/usr/bin/game -x", "/bin/sh -c game", "gamer"]),
        ("game", ["game", "./game --a"], ["game", "./game --a"]),
        ("nginx", ["nginx: master process nginx"], ["nginx: master process nginx"]),
        ("zzz", ["sleep 1", "bash"], []),
    ],
)  # fmt: skip
def test_closest_command_lines(name: str, cmdlines: list[str], expected: list[str]) -> None:
    assert process_hint.closest(name, cmdlines) == expected


def test_shown_command_lines_hide_secrets_and_stay_short() -> None:
    shown = process_hint.shown(
        "app --token abc123 --api-key=k1 -password p https://u:pw@h/x?sig=s " + "a" * 300
    )
    for secret in ("abc123", "k1", " p ", "pw", "sig=s"):
        assert secret not in shown, shown
    assert len(shown) <= process_hint.MAX_CHARS
