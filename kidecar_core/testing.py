"""Testing kit for plugin authors (and for kidecar's own tests).

* :class:`ManualClock` — time that moves only when the test says so (``await
  clock.advance(seconds)``); pass it to :func:`kidecar_core.every` or use the one on
  :class:`FakeContext`.
* :class:`FakeContext` — a :class:`~kidecar_core.PluginContext` for calling a plugin's hooks in
  process: it records what the plugin emits, spawns and logs as Events, serves ``get_object`` from
  a dict, and its clock is a :class:`ManualClock`.
* :class:`Sidecar` — ``kidecar run`` as a real subprocess, the way a pod runs it, with helpers to
  read ``/readyz``, ``/metrics``, the local state file and the log.

Example::

    from kidecar_core.testing import FakeContext

    async def test_ticks_every_second() -> None:
        ctx = FakeContext("my_plugin", MyConfig(period=1.0))
        await my_plugin.kidecar_start(ctx)
        await ctx.clock.advance(3.0)
        assert [r.state for r in ctx.results] == ["up", "up", "up", "up"]
        await ctx.close()
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from kidecar_core import (
    Clock,
    ConflictError,
    Event,
    FieldNotIn,
    ManualClock,
    Metrics,
    NotFoundError,
    ObjectRef,
    PersistError,
    PluginContext,
    PluginState,
    PodIdentity,
    Result,
)
from kidecar_core._config.catalog import load_file, load_parsed
from kidecar_core._config.loader import LoadedConfig
from kidecar_core._persist.applier import guard_blocks
from kidecar_core._persist.result import result_data_problem
from kidecar_core._plugins.manager import Plugins
from kidecar_core._store.objects import merge_by_type, merge_patch

__all__ = ["FakeContext", "ManualClock", "Sidecar", "free_port", "load_config"]


# -- configuration ------------------------------------------------------------------------------


def load_config(
    source: str | Path | Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    plugin_files: Sequence[str] = (),
    lenient: bool = False,
) -> LoadedConfig:
    """Load a config the way ``kidecar run`` does, against the installed plugins.

    ``source`` is a config file's path or the parsed config itself.  The answer's ``plugins``
    hold each configured plugin's ``name``, ``bootorder``, ``index`` and structured ``config``;
    ``warnings`` what ``kidecar run`` would log.  Raises :class:`~kidecar_core.ConfigError` with
    every problem and its path, or :class:`~kidecar_core.StartupError` (a broken plugin).
    """
    environment = dict(env or {})
    plugins = Plugins.load(environment, plugin_files)
    if isinstance(source, Mapping):
        return load_parsed(dict(source), plugins, environment, lenient=lenient)
    return load_file(source, plugins, environment, lenient=lenient)


# -- a plugin's context -------------------------------------------------------------------------


_Change = dict[str, Any] | None | PersistError
"""What a :class:`FakeContext` follower is told: the object's new state, or a watch problem."""


class FakeContext:
    """A :class:`~kidecar_core.PluginContext` for tests, recording what the plugin does.

    ``results`` are the emitted results, ``events`` the recorded Events, ``tasks`` the spawned
    tasks and ``failures`` the exceptions they raised (a real runtime would restart the plugin).
    ``objects`` answers ``get_object`` and ``watch_object``; ``patch_object``/``create_object``
    change it (merge patch; a stale ``metadata.resourceVersion`` is a ``ConflictError``, as on the
    API server) and :meth:`set_object` changes it as another writer would: followers see both.
    ``ours`` holds the values kidecar is to have written itself (``("spec", "opsState") →
    "Maintaining"``), for ``blocking_guard``.  Call :meth:`close` at the end of the test: it
    cancels the tasks still running.
    """

    def __init__(
        self,
        name: str = "plugin",
        config: Any = None,
        *,
        index: int = 0,
        bootorder: int = 0,
        identity: PodIdentity | None = None,
        clock: Clock | None = None,
        local_mode: bool = True,
    ) -> None:
        self.name = name
        self.config = config
        self.index = index
        self.bootorder = bootorder
        self.identity = identity or PodIdentity("gs-0", "default")
        self.clock: Clock = clock or ManualClock()
        self.local_mode = local_mode
        self.shutting_down = False
        """Set it to play a sidecar that received SIGTERM."""
        self.state = PluginState()
        self.log = logging.getLogger(f"kidecar.plugin.{name}")
        self.metrics = Metrics()
        self.objects: dict[ObjectRef, dict[str, Any]] = {}
        self.ours: dict[tuple[str, ...], Any] = {}
        self.results: list[Result] = []
        self.events: list[Event] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.failures: list[BaseException] = []
        self._seen: set[object] = set()
        self._followers: dict[ObjectRef, list[asyncio.Queue[_Change]]] = {}

    @property
    def path(self) -> str:
        return f"plugins[{self.index}]"

    def config_path(self, sub: str) -> str:
        base = f"{self.path}.config"
        return f"{base}.{sub}" if sub else base

    async def get_object(self, ref: ObjectRef) -> dict[str, Any] | None:
        return self.objects.get(ref)

    def blocking_guard(
        self, ref: ObjectRef, guards: Iterable[FieldNotIn], live: Mapping[str, Any]
    ) -> FieldNotIn | None:
        return next((g for g in guards if guard_blocks(g, live, self.ours)), None)

    async def list_objects(self, ref: ObjectRef) -> list[dict[str, Any]]:
        same = ("group", "version", "resource", "namespace")
        return [
            obj
            for r, obj in sorted(self.objects.items(), key=lambda item: item[0].name)
            if all(getattr(r, k) == getattr(ref, k) for k in same)
        ]

    async def patch_status(self, ref: ObjectRef, patch: Mapping[str, Any]) -> dict[str, Any]:
        """The strategic merge of :meth:`kidecar_core.RuntimeView.patch_status`, on ``objects``."""
        obj = self.objects.get(ref)
        if obj is None:
            raise NotFoundError(f"{ref} not found")
        status = dict(patch.get("status") or {})
        conditions = status.pop("conditions", None)
        new: dict[str, Any] = merge_patch(obj, {**patch, "status": status})
        if isinstance(conditions, list):
            current = (obj.get("status") or {}).get("conditions")
            new.setdefault("status", {})["conditions"] = merge_by_type(current, conditions)
        self.objects[ref] = new
        return new

    async def patch_object(self, ref: ObjectRef, patch: Mapping[str, Any]) -> dict[str, Any]:
        live = self.objects.get(ref)
        if live is None:
            raise NotFoundError(f"{ref} does not exist")
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        version = str(live.get("metadata", {}).get("resourceVersion", "1"))
        if wanted is not None and str(wanted) != version:
            raise ConflictError(f"{ref}: resourceVersion {wanted} is stale (now {version})")
        changed = merge_patch(live, patch)
        changed.setdefault("metadata", {})["resourceVersion"] = str(int(version) + 1)
        self.set_object(ref, changed)
        return dict(changed)

    async def create_object(self, ref: ObjectRef, body: Mapping[str, Any]) -> dict[str, Any]:
        if ref in self.objects:
            raise ConflictError(f"{ref} already exists")
        created = merge_patch({}, body)
        created.setdefault("metadata", {}).update(name=ref.name, resourceVersion="1")
        self.set_object(ref, created)
        return dict(created)

    def set_object(self, ref: ObjectRef, obj: dict[str, Any] | None) -> None:
        """Create, change (``obj``) or delete (``None``) an object; followers see it."""
        if obj is None:
            self.objects.pop(ref, None)
        else:
            self.objects[ref] = obj
        for queue in self._followers.get(ref, []):
            queue.put_nowait(obj)

    def fail_watch(self, ref: ObjectRef, error: PersistError) -> None:
        """A problem of the watch of ``ref`` (a 403: :class:`~kidecar_core.ForbiddenError`):
        followers that passed its type in ``stop_on`` get it raised; the others see nothing,
        as with the runtime's watch, which retries by itself."""
        for queue in self._followers.get(ref, []):
            queue.put_nowait(error)

    async def watch_object(
        self, ref: ObjectRef, *, stop_on: tuple[type[PersistError], ...] = ()
    ) -> AsyncIterator[dict[str, Any] | None]:
        """The objects as :meth:`set_object` sets them, and the problems :meth:`fail_watch`
        reports (raised when their type is in ``stop_on``, skipped otherwise)."""
        queue: asyncio.Queue[_Change] = asyncio.Queue()
        self._followers.setdefault(ref, []).append(queue)
        try:
            yield self.objects.get(ref)
            while True:
                change = await queue.get()
                if isinstance(change, PersistError):
                    if isinstance(change, stop_on):
                        raise change
                    continue
                yield change
        finally:
            self._followers[ref].remove(queue)

    def first_time(self, key: object) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def record_event(self, event: Event) -> None:
        self.events.append(event)

    def emit(self, result: Result) -> None:
        """Record ``result``; a ``TypeError`` naming the key when its ``data`` is not a
        :data:`~kidecar_core.ResultData` (string keys, JSON values), so a plugin's tests catch
        what an override or a custom storage type could not serialise."""
        problem = result_data_problem(result.data)
        if problem is not None:
            raise TypeError(f"{result.plugin}: Result.{problem}")
        self.results.append(result)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{name}")
        self.tasks.append(task)

        def done(t: asyncio.Task[Any]) -> None:
            if not t.cancelled() and t.exception() is not None:
                self.failures.append(t.exception())  # type: ignore[arg-type]

        task.add_done_callback(done)
        return task

    async def close(self) -> None:
        """Cancel the spawned tasks still running and wait for them."""
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


# -- a real sidecar process ---------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sidecar:
    """A ``kidecar run`` subprocess with its config, state file and log in ``workdir``.

    Local mode (``--local-state``, the pod and its GameServer in ``state.json``) unless
    ``kubeconfig`` is given.  Use it as a context manager (stopped with SIGTERM at the end)::

        with Sidecar(tmp_path, {"plugins": [...]}) as sc:
            sc.start(wait_ready=True)
            sc.wait_for(lambda: sc.ops_state() == "Allocated", what="opsState")
            assert sc.stop() == 0
    """

    def __init__(
        self,
        workdir: Path,
        config: Mapping[str, Any] | str,
        *,
        kubeconfig: str | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: list[str] | None = None,
        pod_name: str = "gs-0",
        namespace: str = "default",
        open_files: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "config.yaml"
        text = config if isinstance(config, str) else yaml.safe_dump(dict(config))
        self.config_path.write_text(text)
        self.state_path = self.workdir / "state.json"
        self.log_path = self.workdir / "kidecar.log"
        self.admin_port = free_port()
        self.kubeconfig = kubeconfig
        base = dict(os.environ)
        if kubeconfig is None:
            base.pop("KUBERNETES_SERVICE_HOST", None)  # local mode, even when run in a pod
        self.env = {
            **base,
            "POD_NAME": pod_name,
            "POD_NAMESPACE": namespace,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.extra_args = extra_args or []
        self.open_files = open_files
        """``RLIMIT_NOFILE`` (``ulimit -n``) of the process, when given."""
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def admin(self) -> str:
        """Base URL of the admin server."""
        return f"http://127.0.0.1:{self.admin_port}"

    def argv(self) -> list[str]:
        """The command line of ``kidecar run`` (subclasses may wrap it)."""
        where = (
            ["--kubeconfig", self.kubeconfig]
            if self.kubeconfig
            else ["--local-state", str(self.state_path)]
        )
        return [
            sys.executable, "-m", "kidecar_core", "run",
            "--config", str(self.config_path),
            "--admin-listen", f"127.0.0.1:{self.admin_port}",
            "--log-format", "text",
            *where, *self.extra_args,
        ]  # fmt: skip

    def start(self, *, wait_ready: bool = False, timeout: float = 20.0) -> Sidecar:
        """Start the process; wait until it answers ``/healthz`` (and ``/readyz`` with
        ``wait_ready``).  ``AssertionError`` with the log's tail when it exits or times out."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        limit = self.open_files

        def set_limits() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.proc = subprocess.Popen(
            self.argv(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.workdir,
            preexec_fn=set_limits if limit is not None else None,
        )
        self.wait_for(lambda: self.get("/healthz")[0] == 200, timeout, "kidecar to answer /healthz")
        if wait_ready:
            self.wait_for(lambda: self.get("/readyz")[0] == 200, timeout, "kidecar to be ready")
        return self

    def get(self, path: str) -> tuple[int, str]:
        """GET on the admin server: (status, body); (0, error) when it does not answer."""
        try:
            with urllib.request.urlopen(self.admin + path, timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            body = e.read().decode()
            e.close()
            return e.code, body
        except OSError as e:
            return 0, str(e)

    def readyz(self) -> dict[str, Any]:
        """The ``/readyz`` document (``{}`` when the server does not answer)."""
        status, body = self.get("/readyz")
        data: dict[str, Any] = json.loads(body) if status else {}
        return data

    def samples(self, name: str, labels: Mapping[str, str] | None = None) -> list[float]:
        """Values of the ``/metrics`` samples of ``name`` that carry ``labels`` (and maybe more)."""
        _, body = self.get("/metrics")
        want = labels or {}
        found = []
        for line in body.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            pairs = (p.split("=", 1) for p in label_text.rstrip("}").split(",") if "=" in p)
            got = {k: v.strip('"') for k, v in pairs}
            if all(got.get(k) == v for k, v in want.items()):
                found.append(float(value))
        return found

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The first matching sample (see :meth:`samples`); ``None`` when there is none."""
        found = self.samples(name, labels)
        return found[0] if found else None

    def metric_total(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The sum of the matching samples (0 when there is none)."""
        return sum(self.samples(name, labels))

    def state(self) -> dict[str, Any]:
        """The local state file (local mode): ``pod``, ``gameserver``, ``events``, ..."""
        data: dict[str, Any] = json.loads(self.state_path.read_text())
        return data

    def ops_state(self) -> str | None:
        """The GameServer's ``spec.opsState`` in the local state file."""
        value = self.state()["gameserver"].get("spec", {}).get("opsState")
        return None if value is None else str(value)

    def annotations(self) -> dict[str, str]:
        """The pod's annotations in the local state file."""
        annotations: dict[str, str] = self.state()["pod"]["metadata"].get("annotations", {})
        return annotations

    def log(self) -> str:
        """Everything the process logged so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for(
        self, predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition"
    ) -> None:
        """Poll ``predicate`` until true; ``AssertionError`` with the log's tail on timeout or
        when the process exits.  ``OSError``/``ValueError``/``KeyError`` count as "not yet" (the
        state file is replaced atomically, but may not exist yet)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"kidecar exited with {self.proc.returncode} while waiting for {what}:\n"
                    + self.log()[-4000:]
                )
            try:
                if predicate():
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}:\n{self.log()[-4000:]}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait; returns the exit code (killed after ``timeout`` seconds)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.stop()


def _conforms(ctx: FakeContext) -> PluginContext:
    """mypy checks here that :class:`FakeContext` is a :class:`~kidecar_core.PluginContext`."""
    return ctx
