"""The probe handlers against real things: processes (exec), TCP listeners, HTTP(S) servers."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kidecar_plugins.pod_probe.execprobe import run_exec
from kidecar_plugins.pod_probe.netprobe import make_session, probe_url, run_http, run_tcp
from kidecar_plugins.pod_probe.outcome import MAX_OUTPUT_BYTES, Outcome
from kidecar_plugins.pod_probe.spec import ExecAction

PY = sys.executable


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


def sh(script: str, timeout: float = 5.0) -> Outcome:
    result: Outcome = run(run_exec(ExecAction(("sh", "-c", script)), timeout))
    return result


# -- exec ------------------------------------------------------------------------------------------


def test_exec_success_is_exit_0_with_stdout_as_message() -> None:
    assert sh("echo idle; echo noise >&2") == Outcome(True, "idle\n")


def test_exec_failure_is_any_other_exit_code_with_stderr_as_message() -> None:
    assert sh("echo out; echo 'game not ready' >&2; exit 3") == Outcome(
        False, "game not ready\n", "exit status 3"
    )


def test_exec_sees_the_sidecars_files_and_environment(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("Allocated")
    os.environ["KIDECAR_TEST_PROBE_VAR"] = "seen"
    try:
        outcome = sh(f"cat {tmp_path / 'state'}; echo -n /$KIDECAR_TEST_PROBE_VAR")
    finally:
        del os.environ["KIDECAR_TEST_PROBE_VAR"]
    assert outcome == Outcome(True, "Allocated/seen")


def test_exec_output_is_bounded_and_a_chatty_command_never_blocks() -> None:
    # 5 MB on each stream: far more than a pipe buffer; only the first 10 KiB are kept.
    outcome = run(run_exec(ExecAction((PY, "-c", (
        "import sys; sys.stderr.write('e' * 5_000_000); sys.stdout.write('o' * 5_000_000)"
    ))), 10))  # fmt: skip
    assert outcome == Outcome(True, "o" * MAX_OUTPUT_BYTES)


def test_exec_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # A shell whose child and grandchild would outlive it if only the shell were killed.
    script = f"sleep 60 & (sleep 60 & echo $! >> {pids}; wait) & echo $! >> {pids}; " \
             f"echo $$ >> {pids}; echo 'partial' >&2; wait"  # fmt: skip
    outcome = sh(script, timeout=1)
    assert not outcome.succeeded
    assert outcome.reason == "timed out after 1s"
    assert outcome.output == "partial\n"  # what stderr said before the kill
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 3
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in started if _alive(p)]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_exec_of_a_missing_command_fails_with_a_clear_message() -> None:
    outcome = run(run_exec(ExecAction(("/nonexistent/check.sh",)), 1))
    assert outcome == Outcome(
        False,
        "cannot run '/nonexistent/check.sh': No such file or directory",
        "cannot run '/nonexistent/check.sh': No such file or directory",
    )


def test_exec_output_that_is_not_utf8_is_replaced_not_fatal() -> None:
    outcome = run(
        run_exec(ExecAction((PY, "-c", "import sys; sys.stdout.buffer.write(b'ok\\xff')")), 5)
    )
    assert outcome == Outcome(True, "ok\ufffd")


def test_a_cancelled_exec_probe_leaves_no_process_behind(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    async def main() -> int:
        task = asyncio.create_task(
            run_exec(ExecAction(("sh", "-c", f"echo $$ > {pid_file}; exec sleep 60")), 30)
        )
        for _ in range(500):  # the command has started once it wrote its pid
            if pid_file.exists() and pid_file.read_text().strip():
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        return int(pid_file.read_text())

    assert not _alive(run(main()))


def test_an_exec_probe_whose_child_escapes_costs_no_file_descriptor(tmp_path: Path) -> None:
    # The command exits at once, but a child in a session of its own keeps its stdout open:
    # the probe times out, and its pipes must be closed all the same (each run leaked two).
    pids = tmp_path / "pids"
    script = f"setsid sleep 60 & echo $! >> {pids}; echo started"

    async def main() -> tuple[int, int, list[Outcome]]:
        before = len(os.listdir("/proc/self/fd"))
        outcomes = [await run_exec(ExecAction(("sh", "-c", script)), 1) for _ in range(4)]
        await asyncio.sleep(0)  # let the closed transports finish
        return before, len(os.listdir("/proc/self/fd")), outcomes

    try:
        before, after, outcomes = run(main())
    finally:
        for pid in pids.read_text().split():
            with suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    assert [o.reason for o in outcomes] == ["timed out after 1s"] * 4
    assert after <= before


def test_exec_timeout_kills_the_group_even_after_the_command_exited(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    # The shell exits at once; its background child (same process group) holds stdout.
    outcome = sh(f"sleep 60 & echo $! > {pid_file}; echo started", timeout=1)
    assert outcome.reason == "timed out after 1s"
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


# -- tcpSocket -------------------------------------------------------------------------------------


def test_tcp_success_when_a_connection_opens() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert run(run_tcp("127.0.0.1", port, 1)) == Outcome(True, "")


def test_tcp_failure_says_what_go_would_say() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    message = f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    assert run(run_tcp("127.0.0.1", port, 1)) == Outcome(False, message, message)


# -- httpGet ---------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(
    routes: dict[str, Handler], tls: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port
    finally:
        await runner.cleanup()


async def http_probe(
    routes: dict[str, Handler],
    path: str,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    scheme: str = "HTTP",
    tls: ssl.SSLContext | None = None,
    timeout: float = 5,
    host: str = "127.0.0.1",
) -> Outcome:
    async with serve(routes, tls) as port, make_session() as session:
        result: Outcome = await run_http(
            session, probe_url(scheme, host, port, path), headers, timeout
        )
        return result


def text(body: str, status: int = 200, **headers: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(text=body, status=status, headers=headers)

    return handle


def test_http_2xx_is_success_with_the_body_as_message() -> None:
    assert run(http_probe({"/state": text("idle", 204 - 4)}, "/state")) == Outcome(True, "idle")


def test_http_4xx_and_5xx_fail_with_the_status_code() -> None:
    for status in (404, 500, 503):
        message = f"HTTP probe failed with statuscode: {status}"
        got = run(http_probe({"/s": text("secret body", status)}, "/s"))
        assert got == Outcome(False, message, message)


def test_http_sends_kubelet_headers_and_the_probes_own() -> None:
    seen: dict[str, Any] = {}

    async def record(request: web.Request) -> web.StreamResponse:
        seen.update(request.headers)
        seen["path"] = request.path_qs
        return web.Response(text="ok")

    run(http_probe({"/h": record}, "h?x=1", headers=(("X-Game", "a"), ("Host", "game.local"))))
    assert seen["path"] == "/h?x=1"
    assert seen["User-Agent"] == "kube-probe"
    assert seen["Accept"] == "*/*"
    assert seen["X-Game"] == "a"
    assert seen["Host"] == "game.local"
    seen.clear()
    run(http_probe({"/h": record}, "/h", headers=(("Accept", ""), ("User-Agent", "mine"))))
    assert "Accept" not in seen and seen["User-Agent"] == "mine"


def test_http_follows_redirects_to_the_same_host_only() -> None:
    async def hop(request: web.Request) -> web.StreamResponse:
        n = int(request.query.get("n", "0"))
        raise web.HTTPFound(f"/hop?n={n + 1}" if n < 3 else "/done")

    routes = {"/hop": hop, "/done": text("arrived")}
    assert run(http_probe(routes, "/hop")) == Outcome(True, "arrived")
    # Elsewhere (another host name): the 3xx answer ends the probe, a success (kubelet warning).
    away = {"/": text("moved", 302, Location="http://other.invalid/x")}
    assert run(http_probe(away, "/")) == Outcome(
        True, "Probe terminated redirects, Response body: moved"
    )


def test_http_stops_after_ten_redirects() -> None:
    async def loop(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/loop")

    outcome = run(http_probe({"/loop": loop}, "/loop"))
    assert not outcome.succeeded
    assert outcome.output.endswith('/loop": stopped after 10 redirects')


def test_http_timeout_covers_the_whole_exchange() -> None:
    async def main() -> Outcome:
        release = asyncio.Event()

        async def slow(request: web.Request) -> web.StreamResponse:
            await release.wait()
            return web.Response(text="late")

        async with serve({"/slow": slow}) as port, make_session() as session:
            url = probe_url("HTTP", "127.0.0.1", port, "/slow")
            try:
                result: Outcome = await run_http(session, url, (), 0.5)
            finally:
                release.set()
            return result

    outcome = run(main())
    assert not outcome.succeeded and "timed out after 0.5s" in outcome.output


def test_http_body_is_read_up_to_10_kib() -> None:
    outcome = run(http_probe({"/big": text("b" * 1_000_000)}, "/big"))
    assert outcome == Outcome(True, "b" * MAX_OUTPUT_BYTES)


def test_https_without_certificate_verification(tmp_path: Path) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert, key = _self_signed(tmp_path)
    tls.load_cert_chain(cert, key)
    got = run(http_probe({"/s": text("secure")}, "/s", scheme="HTTPS", tls=tls))
    assert got == Outcome(True, "secure")


def test_nothing_listening_is_a_failure_naming_the_url() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

    async def main() -> Outcome:
        async with make_session() as session:
            result: Outcome = await run_http(
                session, probe_url("HTTP", "127.0.0.1", port, "/x"), (), 2
            )
            return result

    outcome = run(main())
    assert not outcome.succeeded
    assert outcome.output.startswith(f'Get "http://127.0.0.1:{port}/x": ')


def test_probe_urls_bracket_ipv6_and_add_the_leading_slash() -> None:
    assert str(probe_url("HTTPS", "::1", 8443, "healthz")) == "https://[::1]:8443/healthz"
    assert str(probe_url("HTTP", "10.0.0.7", 80, "/a?b=c")) == "http://10.0.0.7/a?b=c"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "game")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
