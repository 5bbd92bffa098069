"""The hot-update API end to end: a real sidecar (local mode), a real game, a real file server.

The table covers every error status the API answers. For each bad request the previous file
must stay byte for byte, no temporary file may be left, and the game must receive no signal.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kidecar_core.testing import Sidecar, free_port
from tests.plugins.hot_update.conftest import Running, StartSidecar
from tests.plugins.hot_update.fileserver import FileServer, pattern_sha256, wait_until
from tests.plugins.hot_update.harness import Api, Game, hot_update_config

TOKEN = "s3cret-token-for-tests"
MAX_BYTES = 64 * 1024
BASE = "base content v1\n"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, files: FileServer) -> Iterator[Running]:
    """One sidecar for the whole table: token auth, 64 KiB cap, 1.5 s download timeout."""
    work = tmp_path_factory.mktemp("hot-update-api")
    file_dir = work / "downloads"
    file_dir.mkdir()
    game = Game(work, file_dir / "index.html").start()
    port = free_port()
    config = hot_update_config(
        file_dir,
        port,
        process_name=game.title,
        auth={"tokenEnv": "HOT_UPDATE_TOKEN"},
        maxBytes=MAX_BYTES,
        downloadTimeoutSeconds=1.5,
    )
    sidecar = Sidecar(work / "sidecar", config, env={"HOT_UPDATE_TOKEN": TOKEN}).start()
    api = Api(port, TOKEN)
    sidecar.wait_for(lambda: api.get()[0] == 200, 10, "the hot-update API")
    status, body = api.post({"version": "v1", "url": files.add("index.html", BASE)})
    assert status == 200, body
    game.wait_loaded(BASE)
    r = Running(sidecar, game, api, file_dir)
    sidecar.wait_for(lambda: r.annotation() == "v1: Update success", 15, "the v1 annotation")
    yield r
    sidecar.stop()
    game.stop()


def closed_port() -> int:
    return free_port()


# (id, request builder, expected status, expected reason, recorded as an attempt)
Case = tuple[str, Callable[[FileServer], dict[str, Any]], int, str, bool]
V2 = "v2"


def form(**fields: str) -> Callable[[FileServer], dict[str, Any]]:
    return lambda fs: {
        "fields": {k: v.replace("FS", f"127.0.0.1:{fs.port}") for k, v in fields.items()}
    }


CASES: list[Case] = [
    # 400: bad input
    ("no-version", form(url="http://FS/f/index.html"), 400, "bad request", False),
    ("no-url", form(version=V2), 400, "bad request", False),
    ("empty-version", form(version="", url="http://FS/f/index.html"), 400, "bad request", False),
    (
        "version-word",
        form(version="latest", url="http://FS/f/index.html"),
        400,
        "bad request",
        False,
    ),
    (
        "version-trailing-dot",
        form(version="v1.2.3.", url="http://FS/f/x"),
        400,
        "bad request",
        False,
    ),
    (
        "version-colon",
        form(version="v2: Update success", url="http://FS/f/x"),
        400,
        "bad request",
        False,
    ),
    (
        "version-too-long",
        form(version="v1-" + "a" * 200, url="http://FS/f/x"),
        400,
        "bad request",
        False,
    ),
    ("url-ftp", form(version=V2, url="ftp://FS/index.html"), 400, "bad url", False),
    ("url-file", form(version=V2, url="file:///etc/passwd"), 400, "bad url", False),
    ("url-garbage", form(version=V2, url="not a url"), 400, "bad url", False),
    ("url-no-host", form(version=V2, url="http:///index.html"), 400, "bad url", False),
    ("url-dir", form(version=V2, url="http://FS/f/"), 400, "bad url", False),
    (
        "url-traversal",
        form(version=V2, url="http://FS/f/..%2F..%2Fetc%2Fpasswd"),
        400,
        "bad url",
        False,
    ),
    ("url-dotdot", form(version=V2, url="http://FS/f/.."), 400, "bad url", False),
    ("url-temp-name", form(version=V2, url="http://FS/f/.x.kidecar-tmp"), 400, "bad url", False),
    (
        "sha-short",
        form(version=V2, url="http://FS/f/index.html", sha256="abc"),
        400,
        "bad request",
        False,
    ),
    ("json-not-object", lambda fs: {"json_body": ["v2"]}, 400, "bad request", False),
    (
        "json-number",
        lambda fs: {"json_body": {"version": 2, "url": fs.url("/f/index.html")}},
        400,
        "bad request",
        False,
    ),
    ("json-invalid", lambda fs: {"raw": ("application/json", b"{nope")}, 400, "bad request", False),
    ("text-body", lambda fs: {"raw": ("text/plain", b"version=v2")}, 400, "bad request", False),
    (
        "query-vs-body",
        lambda fs: {
            "query": {"version": "v3"},
            "fields": {"version": V2, "url": fs.url("/f/index.html")},
        },
        400,
        "bad request",
        False,
    ),
    # Found by the reliability suite's fuzzing: aiohttp's form parser raising (was a 500), and
    # a long URL in the query string (was aiohttp's plain-text 400, not the API's JSON).
    (
        "multipart-no-boundary",
        lambda fs: {"raw": ("multipart/form-data", b"version=v2&url=http://x/f")},
        400,
        "bad request",
        False,
    ),
    (
        "form-not-utf8",
        lambda fs: {"raw": ("application/x-www-form-urlencoded", b"version=v\xff2&url=x")},
        400,
        "bad request",
        False,
    ),
    (
        "form-unknown-charset",
        lambda fs: {"raw": ("application/x-www-form-urlencoded; charset=nope", b"version=v2")},
        400,
        "bad request",
        False,
    ),
    (
        "query-url-too-long",
        lambda fs: {"query": {"version": V2, "url": fs.url("/f/" + "\u00e9" * 4100)}},
        400,
        "bad url",
        False,
    ),
    # 401/403: authentication, checked before the input
    (
        "bad-input-without-token",
        lambda fs: {"fields": {"version": "latest"}, "token": None},
        401,
        "unauthorized",
        False,
    ),
    (
        "no-token",
        lambda fs: {"fields": {"version": V2, "url": fs.url("/f/index.html")}, "token": None},
        401,
        "unauthorized",
        False,
    ),
    (
        "basic-auth",
        lambda fs: {
            "fields": {"version": V2, "url": fs.url("/f/index.html")},
            "token": None,
            "headers": {"Authorization": "Basic dXNlcjpwYXNz"},
        },
        401,
        "unauthorized",
        False,
    ),
    (
        "wrong-token",
        lambda fs: {"fields": {"version": V2, "url": fs.url("/f/index.html")}, "token": "guess"},
        403,
        "forbidden",
        False,
    ),
    # 403: addresses refused by policy (no connection is attempted)
    (
        "metadata-ip",
        form(version=V2, url="http://169.254.169.254/latest/meta-data/x"),
        403,
        "url not allowed",
        True,
    ),
    (
        "mapped-metadata-ip",
        form(version=V2, url="http://[::ffff:169.254.169.254]/x"),
        403,
        "url not allowed",
        True,
    ),
    (
        "alibaba-metadata",
        form(version=V2, url="http://100.100.100.200/latest/x"),
        403,
        "url not allowed",
        True,
    ),
    ("ipv6-link-local", form(version=V2, url="http://[fe80::1]/x"), 403, "url not allowed", True),
    (
        "redirect-to-metadata",
        lambda fs: {
            "fields": {
                "version": V2,
                "url": fs.url("/redirect?to=http://169.254.169.254/index.html"),
            }
        },
        403,
        "url not allowed",
        True,
    ),
    # 413: too large
    (
        "too-large-declared",
        form(version=V2, url=f"http://FS/big?size={MAX_BYTES + 1}"),
        413,
        "file too large",
        True,
    ),
    (
        "too-large-streamed",
        form(version=V2, url=f"http://FS/stream?size={MAX_BYTES * 3}"),
        413,
        "file too large",
        True,
    ),
    # 422: checksum
    (
        "wrong-sha256",
        form(version=V2, url="http://FS/f/v2.html", sha256="0" * 64),
        422,
        "checksum mismatch",
        True,
    ),
    # 502: download failed
    (
        "http-404",
        form(version=V2, url="http://FS/f/missing.html"),
        502,
        "download failed: HTTP 404",
        True,
    ),
    (
        "http-500",
        form(version=V2, url="http://FS/status/500"),
        502,
        "download failed: HTTP 500",
        True,
    ),
    (
        "refused",
        lambda fs: {"fields": {"version": V2, "url": f"http://127.0.0.1:{closed_port()}/x"}},
        502,
        "download failed",
        True,
    ),
    ("timeout", form(version=V2, url="http://FS/hang"), 502, "download timed out", True),
    (
        "redirect-loop",
        form(version=V2, url="http://FS/redirect-loop"),
        502,
        "download failed",
        True,
    ),
    (
        "redirect-no-location",
        form(version=V2, url="http://FS/redirect-empty"),
        502,
        "download failed",
        True,
    ),
]


@pytest.mark.parametrize(
    ("request_of", "status", "reason", "recorded"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_request_keeps_previous_file_and_sends_no_signal(
    running: Running,
    files: FileServer,
    request_of: Callable[[FileServer], dict[str, Any]],
    status: int,
    reason: str,
    recorded: bool,
) -> None:
    files.add("v2.html", "v2 content\n")
    target = running.file_dir / "index.html"
    before = target.read_bytes()
    listing = running.listing()
    signals = running.game.signals() if running.game else []
    annotation = running.annotation()

    got, body = running.api.post(**request_of(files))

    assert got == status, body
    assert body["status"] == "error"
    assert body["code"] == status
    assert body["reason"] == reason, body
    assert body["message"]
    assert target.read_bytes() == before
    assert running.listing() == listing, "no temporary or new files may be left"
    assert running.game is not None and running.game.alive
    assert running.game.signals() == signals, "no signal for a failed update"
    if recorded:
        want = f"{V2}: Update failed: {reason}"
        running.sidecar.wait_for(lambda: running.annotation() == want, 5, want)
        _, current = running.api.get()
        assert current["lastResult"]["status"] == "failed"
        assert current["lastResult"]["code"] == status
        assert current["version"] != V2
    else:
        assert running.annotation() == annotation, "a refused request is not an update attempt"


def test_documented_curl_call_form_fields(running: Running, files: FileServer) -> None:
    url = files.add("v2/index.html", "form v2\n")
    status, body = running.api.post({"version": "v2", "url": url})
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["version"] == "v2"
    assert body["file"] == str(running.file_dir / "index.html")
    assert body["sha256"] == hashlib.sha256(b"form v2\n").hexdigest()
    assert (running.file_dir / "index.html").read_text() == "form v2\n"
    assert running.game is not None
    running.game.wait_loaded("form v2\n")
    assert running.listing() == ["index.html"]
    running.sidecar.wait_for(lambda: running.annotation() == "v2: Update success", 15, "annotation")
    _, current = running.api.get()
    assert current["version"] == "v2"
    assert current["url"] == url
    assert current["sha256"] == body["sha256"]
    assert current["lastResult"]["status"] == "success"
    assert current["updatedAt"]
    assert current["inProgress"] is None


@pytest.mark.parametrize("how", ["query", "json", "form-with-sha256", "prerelease"])
def test_other_ways_to_call(running: Running, files: FileServer, how: str) -> None:
    content = f"content via {how}\n"
    url = files.add(f"{how}/index.html", content)
    sha = hashlib.sha256(content.encode()).hexdigest()
    version = "v3.1.0-rc.1+build.7" if how == "prerelease" else "v3.1.0"
    if how == "query":
        status, body = running.api.post(query={"version": version, "url": url})
    elif how == "json":
        status, body = running.api.post(json_body={"version": version, "url": url, "sha256": sha})
    else:
        status, body = running.api.post({"version": version, "url": url, "sha256": sha.upper()})
    assert status == 200, body
    assert body["sha256"] == sha
    assert running.game is not None
    running.game.wait_loaded(content)


def test_redirect_to_an_allowed_url_is_followed(running: Running, files: FileServer) -> None:
    url = files.add("redirected/index.html", "after a redirect\n")
    status, body = running.api.post(
        {"version": "v4", "url": files.url(f"/redirect?to={url}&code=307")}
    )
    # The file is named after the URL that was asked for, not after the redirect target.
    assert status == 200, body
    assert (running.file_dir / "redirect").read_text() == "after a redirect\n"
    (running.file_dir / "redirect").unlink()


def test_concurrent_update_gets_409(running: Running, files: FileServer) -> None:
    files.add("index.html", "slow content\n")
    files.reset_slow()
    results: dict[str, tuple[int, dict[str, Any]]] = {}
    first = threading.Thread(
        target=lambda: results.__setitem__(
            "first", running.api.post({"version": "v5", "url": files.url("/slow/index.html")})
        )
    )
    first.start()
    try:
        assert files.slow_started.wait(10)
        _, during = running.api.get()
        assert during["inProgress"]["version"] == "v5"
        status, body = running.api.post({"version": "v6", "url": files.add("v6", "v6\n")})
        assert status == 409, body
        assert body["reason"] == "busy"
        assert "v5" in body["message"]
    finally:
        files.release()
        first.join(20)
    assert results["first"][0] == 200, results["first"]
    assert running.game is not None
    running.game.wait_loaded("slow content\n")


def test_two_simultaneous_posts_one_200_one_409(running: Running, files: FileServer) -> None:
    files.add("index.html", "raced\n")
    files.reset_slow()
    barrier = threading.Barrier(2)
    results: list[int] = []

    def post(version: str) -> None:
        barrier.wait()
        status, _ = running.api.post({"version": version, "url": files.url("/slow/index.html")})
        results.append(status)

    threads = [threading.Thread(target=post, args=(v,)) for v in ("v7", "v8")]
    for t in threads:
        t.start()
    wait_until(lambda: len(results) == 1, 10, "the losing request")
    files.release()
    for t in threads:
        t.join(20)
    assert sorted(results) == [200, 409]


def test_get_requires_the_token(running: Running) -> None:
    status, body = running.api.get(token=None)
    assert status == 401
    assert body["status"] == "error"


def test_metrics_count_updates_by_result(running: Running) -> None:
    success = running.sidecar.metric(
        "kidecar_hot_update_updates_total", {"result": "success", "trigger": "api"}
    )
    bad = running.sidecar.metric(
        "kidecar_hot_update_updates_total", {"result": "bad_request", "trigger": "api"}
    )
    assert success is not None and success >= 1
    assert bad is not None and bad >= 1
    assert (running.sidecar.metric("kidecar_hot_update_download_bytes_total") or 0) > 0
    assert (running.sidecar.metric("kidecar_hot_update_download_seconds_count") or 0) >= 1


def test_events_record_each_update(running: Running) -> None:
    events = running.state()["events"]
    reasons = {e["reason"] for e in events}
    assert {"HotUpdateSucceeded", "HotUpdateFailed"} <= reasons
    failed = [e for e in events if e["reason"] == "HotUpdateFailed"]
    assert all(e["type"] == "Warning" for e in failed)


# -- separate sidecars ---------------------------------------------------------------------


def test_game_not_found_is_503_without_download(
    start_sidecar: StartSidecar, files: FileServer
) -> None:
    game = None
    r = start_sidecar(game=game, process_name="game: master process that-does-not-run")
    (r.file_dir / "index.html").write_text("old\n")
    before = len(files.requests)
    status, body = r.api.post({"version": "v2", "url": files.add("nf.html", "new\n")})
    assert status == 503, body
    assert body["reason"] == "game process not found"
    # Other processes are visible here (the test machine's): the closest are listed, else the
    # pod would need shareProcessNamespace.
    assert "closest command lines" in body["message"] or "shareProcessNamespace" in body["message"]
    assert len(files.requests) == before, "nothing is downloaded for a game that is not there"
    assert (r.file_dir / "index.html").read_text() == "old\n"
    assert r.listing() == ["index.html"]
    r.sidecar.wait_for(
        lambda: r.annotation() == "v2: Update failed: game process not found", 5, "annotation"
    )


def test_game_that_exits_during_the_download_gets_the_previous_file_back(
    start_sidecar: StartSidecar, files: FileServer
) -> None:
    r = start_sidecar()
    assert r.game is not None
    assert r.api.post({"version": "v1", "url": files.add("gx1/index.html", "v1 file\n")})[0] == 200
    files.add("index.html", "v2 file\n")
    files.reset_slow()
    result: list[tuple[int, dict[str, Any]]] = []
    post = threading.Thread(
        target=lambda: result.append(
            r.api.post({"version": "v2", "url": files.url("/slow/index.html")})
        )
    )
    post.start()
    assert files.slow_started.wait(10)
    r.game.stop()  # the game goes away while its new file downloads
    files.release()
    post.join(20)
    status, body = result[0]
    assert status == 503, body
    assert (r.file_dir / "index.html").read_text() == "v1 file\n", "rolled back"
    assert r.listing() == ["index.html"]
    assert r.api.get()[1]["version"] == "v1"


def test_game_that_does_not_handle_the_signal_is_not_killed(
    start_sidecar: StartSidecar, files: FileServer, tmp_path: Path
) -> None:
    file = tmp_path / "downloads" / "index.html"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("old\n")
    game = Game(tmp_path, file, handler_delay=60).start(wait_ready=False)
    try:
        r = start_sidecar(game=game)
        status, body = r.api.post({"version": "v2", "url": files.add("h.html", "new\n")})
        assert status == 503, body
        assert body["reason"] == "game does not handle the signal"
        assert game.alive
        assert file.read_text() == "old\n"
    finally:
        game.stop()


def test_exact_match_never_signals_a_prefix_or_substring(
    start_sidecar: StartSidecar, files: FileServer, tmp_path: Path
) -> None:
    """The Go version matched a substring of `ps aux`: a longer command line must not match."""
    game = Game(tmp_path, tmp_path / "downloads" / "index.html").start()
    r = start_sidecar(game=None, process_name=game.title.rsplit(" ", 1)[0])
    try:
        status, body = r.api.post({"version": "v2", "url": files.add("s.html", "x\n")})
        assert status == 503, body
        assert game.signals() == []
    finally:
        game.stop()


def test_regex_process_name(start_sidecar: StartSidecar, files: FileServer, tmp_path: Path) -> None:
    game = Game(tmp_path, tmp_path / "downloads" / "index.html").start()
    try:
        suffix = game.title.rsplit(" ", 1)[1]
        r = start_sidecar(
            game=None,
            signal={
                "processName": rf"game: master process {suffix}\b.*",
                "signalName": "HUP",
                "processNameRegex": True,
            },
            loadPatchType="signal",
        )
        status, body = r.api.post({"version": "v2", "url": files.add("re/index.html", "regex\n")})
        assert status == 200, body
        assert str(game.proc.pid if game.proc else "") in body["message"]
        game.wait_loaded("regex\n")
    finally:
        game.stop()


def test_allowed_url_prefixes(start_sidecar: StartSidecar, files: FileServer) -> None:
    r = start_sidecar(allowedUrlPrefixes=[files.url("/f/allowed/")])
    ok_url = files.add("allowed/index.html", "allowed\n")
    assert r.api.post({"version": "v2", "url": ok_url})[0] == 200
    outside = files.add("other/index.html", "other\n")
    for url in (
        outside,
        f"http://localhost:{files.port}/f/allowed/index.html",  # another host
        files.url("/f/allowed-but-not/index.html"),  # a longer path segment is not the prefix
        files.url(f"/redirect?to={outside}"),
    ):
        status, body = r.api.post({"version": "v3", "url": url})
        assert (status, body["reason"]) == (403, "url not allowed"), (url, body)
    assert (r.file_dir / "index.html").read_text() == "allowed\n"


def test_large_download_streams_without_growing_memory(
    start_sidecar: StartSidecar, files: FileServer
) -> None:
    import psutil

    size = 256 * 1024 * 1024
    r = start_sidecar(maxBytes=size)
    assert r.sidecar.proc is not None
    proc = psutil.Process(r.sidecar.proc.pid)
    rss_before = proc.memory_info().rss
    peak = rss_before
    done: list[tuple[int, dict[str, Any]]] = []
    t = threading.Thread(
        target=lambda: done.append(
            r.api.post({"version": "v2", "url": files.url(f"/stream?size={size}")}, timeout=120)
        )
    )
    t.start()
    while t.is_alive():
        peak = max(peak, proc.memory_info().rss)
        t.join(0.02)
    status, body = done[0]
    assert status == 200, body
    assert body["sha256"] == pattern_sha256(size)
    assert (r.file_dir / "stream").stat().st_size == size
    assert peak - rss_before < 48 * 1024 * 1024, f"RSS grew by {(peak - rss_before) >> 20} MiB"


def test_without_token_listens_on_loopback_only(start_sidecar: StartSidecar) -> None:
    import psutil

    port = free_port()
    r = start_sidecar(game=None, process_name="x", listen=f":{port}")
    assert r.sidecar.proc is not None
    listening = [
        c.laddr
        for c in psutil.Process(r.sidecar.proc.pid).net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    assert [a.ip for a in listening] == ["127.0.0.1"]
    assert "listens on 127.0.0.1" in r.sidecar.log()
    assert "auth.tokenFile" in r.sidecar.log()


def test_token_from_file_is_reread_when_rotated(
    start_sidecar: StartSidecar, files: FileServer, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-AAA111\n")
    r = start_sidecar(auth={"tokenFile": str(token_file)})
    url = files.add("tok.html", "tok\n")
    assert r.api.post({"version": "v2", "url": url}, token="tok-AAA111")[0] == 200
    token_file.write_text("tok-BBB222\n")
    os.utime(token_file, ns=(1, 1))  # a distinct mtime even on coarse clocks
    assert r.api.post({"version": "v3", "url": url}, token="tok-AAA111")[0] == 403
    assert r.api.post({"version": "v3", "url": url}, token="tok-BBB222")[0] == 200
    assert "tok-" not in r.sidecar.log(), "tokens are never logged"


def test_stale_temporary_files_are_removed_at_start(
    start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    file_dir = tmp_path / "downloads"
    file_dir.mkdir()
    (file_dir / ".index.html.abc123.kidecar-tmp").write_text("half a download")
    (file_dir / ".index.html.kidecar-prev").write_text("a backup")
    (file_dir / "keep.txt").write_text("not ours")
    r = start_sidecar(game=None, process_name="x", file_dir=file_dir)
    r.sidecar.wait_for(lambda: r.listing() == ["keep.txt"], 15, "stale files to go")


def test_state_file_annotation_uses_go_format(running: Running) -> None:
    annotation = running.annotation()
    assert annotation is not None
    assert annotation.endswith((": Update success",)) or ": Update failed: " in annotation
    data = running.state()["configmaps"]["sidecar-result"]["data"]
    record = json.loads(data["pod.gs-0"])
    assert set(record) >= {"version", "url", "sha256", "file", "updatedAt"}
