"""Local mode: the pod, its GameServer and ConfigMaps kept as JSON in one file.

``kidecar run --local-state state.json`` uses this store instead of the Kubernetes API, with the
same semantics (merge patches, 404, create, 409 on create of an existing object), so that
everything can be tried on a laptop.  The file::

    {"pod": {...}, "gameserver": {...},
     "configmaps": {"<name>": {"metadata": {...}, "data": {...}}},
     "objects": {"<group>/<version>/<resource>/<namespace>/<name>": {...}},
     "events": [{"reason": ..., "message": ..., "type": ..., "time": ...}]}

Each write replaces the file atomically (temp file + fsync + rename); temporary files left by a
killed kidecar (``.state.json.XXXXXXXX`` beside the file) are removed when it starts.  The file
may be edited by hand while kidecar runs (to play a human setting ``Maintaining``): it is
re-read when it changed.  A hand edit made while kidecar saves is kept: a save checks, just
before its rename, that the file is still the one it read, and otherwise starts again from the
edited file.  Only an edit landing between that check and the rename (a few microseconds) is
replaced; a rename-based lock-free check cannot close that window.

Writes are validated the way the API server validates them (:mod:`.validation`: label keys and
values, annotation keys and their 256 KiB total size): a write the API server would refuse with
422 is refused here with :class:`~kidecar_core.errors.InvalidError` too, so a config that works
locally works in a cluster.

A hand edit is re-read when the file changed, and an object whose content changed without a new
``metadata.resourceVersion`` gets one (in memory, written with the next save), so that a write
prepared before the edit is refused (409) exactly as the API server would refuse it.

**Watching** (:meth:`LocalStore.watch`): kidecar's own writes are reported at once; changes by
anyone else (a human editing the file, another process) are noticed by looking at the file's
identity (inode, modification time in ns, size) every :attr:`LocalStore.poll_interval` seconds
(0.5 s).  Polling rather than inotify: it is one ``stat`` per half second (the object is copied
and compared only when the document changed), needs no extra
dependency, works the same on a laptop's macOS or Windows (local mode's home) as on Linux and on
network filesystems, and sees editors that save by writing a new file and renaming it over the
old one, which a watch on the file itself loses track of.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from kidecar_core._base.files import read_regular_file
from kidecar_core._base.values import describe_value
from kidecar_core._store.objects import (
    JSON,
    Event,
    ObjectRef,
    Observation,
    PodIdentity,
    merge_by_type,
    merge_patch,
)
from kidecar_core._store.validation import metadata_problems
from kidecar_core.errors import (
    ConflictError,
    InvalidError,
    NotFoundError,
    PermanentPersistError,
    TransientPersistError,
)

log = logging.getLogger("kidecar.local")

MAX_EVENTS = 100
MAX_STATE_BYTES = 64 * 2**20
"""A local state file larger than this is refused (it holds a pod, a GameServer, ConfigMaps
and the last :data:`MAX_EVENTS` Events: a few hundred KiB)."""
POLL_INTERVAL = 0.5
"""Seconds between two looks at the state file for changes made by someone else."""
EDIT_RETRIES = 5
"""Saves attempted, each from a fresh read, while someone else keeps editing the file."""
_ABSENT = object()
_T = TypeVar("_T")


class _EditedMeanwhile(Exception):
    """The file changed between kidecar's last read and its save (a hand edit): save again from
    a fresh read."""


def initial_state(who: PodIdentity) -> dict[str, Any]:
    """A fresh state file: a pod and a GameServer named after the pod, opsState ``None``."""
    meta = {"name": who.name, "namespace": who.namespace, "labels": {}, "annotations": {}}
    return {
        "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": dict(meta, resourceVersion="1")},
        "gameserver": {
            "apiVersion": "game.kruise.io/v1alpha1",
            "kind": "GameServer",
            "metadata": dict(meta, resourceVersion="1"),
            "spec": {"opsState": "None", "updatePriority": 0, "deletionPriority": 0},
        },
        "configmaps": {},
        "objects": {},
        "events": [],
    }


class LocalStore:
    """An :class:`~kidecar_core._store.objects.ObjectStore` over a local JSON file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        who: PodIdentity,
        *,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.path = Path(path)
        self.who = who
        self.poll_interval = poll_interval
        self.description = f"local state file {self.path}"
        self._lock = asyncio.Lock()
        self._doc: dict[str, Any] | None = None
        self._signature: Signature | None = None
        # The rule: every assignment to ``_doc`` and every change made to it in place happen on
        # the event loop under ``_lock`` (or in ``__init__``), followed by ``_generation += 1``
        # (a save, a re-read, a restore).  A watch compares the object again only when the
        # generation moved; the signature cannot tell, since a file's identity can repeat (a
        # reused inode and the same size within one tick of the filesystem's clock, or a file
        # renamed back).
        self._generation = 0
        self._watchers: set[asyncio.Event] = set()
        remove_stale_temporaries(self.path)
        self._load()  # create the file now, so that a user sees it as soon as kidecar runs

    # -- file -------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            if self._doc is None:
                self._doc = initial_state(self.who)
                self._saved(save_document(self.path, self._doc, None))
            return self._doc
        signature = (info.st_ino, info.st_mtime_ns, info.st_size)
        if self._doc is not None and signature == self._signature:
            return self._doc
        doc = completed(self.path, read_state_file(self.path), self.who)
        if self._doc is not None:
            _new_versions_for_edits(self._doc, doc)
        self._doc, self._signature = doc, signature
        self._generation += 1
        return doc

    def _saved(self, signature: Signature | None) -> None:
        """After :func:`save_document` (on the event loop, or in ``__init__``): the file holds
        ``_doc``; wake the watches."""
        self._signature = signature
        self._generation += 1
        for wake in list(self._watchers):
            wake.set()

    async def _write(self, change: Callable[[dict[str, Any]], _T]) -> _T:
        """Apply ``change`` to the document as it is in the file and save it, again from a fresh
        read when someone edited the file while it was being saved (at most
        :data:`EDIT_RETRIES` times; then :class:`~kidecar_core.errors.TransientPersistError`).
        ``change`` may raise to refuse the write; the document is then left as it was."""
        for _ in range(EDIT_RETRIES):
            doc = self._load()
            backup = copy.deepcopy(doc)
            saving: asyncio.Future[Signature] | None = None
            try:
                result = change(doc)
                expected = self._signature
                saving = asyncio.ensure_future(
                    asyncio.to_thread(save_document, self.path, doc, expected)
                )
                self._saved(await _to_the_end(saving))
            except _EditedMeanwhile:
                self._doc, self._signature = backup, None  # re-read the file, edits included
                self._generation += 1
                continue
            except OSError as e:
                self._doc = backup
                self._generation += 1
                raise TransientPersistError(
                    f"cannot write {self.path}: {e.strerror or e}"
                ) from None
            except BaseException:  # cancelled (after the save ended: see _to_the_end)
                if saving is not None and _succeeded(saving):
                    self._saved(saving.result())  # the file holds ``doc``: keep it
                else:
                    self._doc = backup
                    self._generation += 1
                raise
            return result
        raise TransientPersistError(f"{self.path} keeps changing while kidecar writes it")

    # -- ObjectStore ------------------------------------------------------------------------

    async def get(self, ref: ObjectRef) -> dict[str, JSON] | None:
        async with self._lock:
            doc = self._load()
            holder, key = _slot(self.who, doc, ref)
            obj = holder.get(key)
            return copy.deepcopy(obj) if isinstance(obj, dict) else None

    async def patch(self, ref: ObjectRef, patch: Mapping[str, JSON]) -> dict[str, JSON]:
        def change(doc: dict[str, Any]) -> dict[str, JSON]:
            holder, key = _slot(self.who, doc, ref)
            obj = holder.get(key)
            if not isinstance(obj, dict):
                raise NotFoundError(f"{ref} not found in {self.path}")
            wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
            current_rv = obj.get("metadata", {}).get("resourceVersion")
            if wanted_rv is not None and wanted_rv != current_rv:
                raise ConflictError(f"{ref} was modified (resourceVersion {current_rv})")
            new = merge_patch(obj, patch)
            _validate(ref, new)
            _bump(new)
            holder[key] = new
            return copy.deepcopy(new)

        async with self._lock:
            return await self._write(change)

    async def patch_status(self, ref: ObjectRef, patch: Mapping[str, JSON]) -> dict[str, JSON]:
        """The status subresource, as the API server's strategic merge does it for a pod:
        ``status.conditions`` entries are merged by ``type``, everything else as :meth:`patch`."""
        conditions = (patch.get("status") or {}).get("conditions")
        if not isinstance(conditions, list):
            return await self.patch(ref, patch)

        def change(doc: dict[str, Any]) -> dict[str, JSON]:
            holder, key = _slot(self.who, doc, ref)
            obj = holder.get(key)
            if not isinstance(obj, dict):
                raise NotFoundError(f"{ref} not found in {self.path}")
            status = {k: v for k, v in patch["status"].items() if k != "conditions"}
            new = merge_patch(obj, {**patch, "status": status})
            new.setdefault("status", {})["conditions"] = merge_by_type(
                (obj.get("status") or {}).get("conditions"), conditions
            )
            _validate(ref, new)
            _bump(new)
            holder[key] = new
            return copy.deepcopy(new)

        async with self._lock:
            return await self._write(change)

    async def list(self, ref: ObjectRef) -> list[dict[str, JSON]]:
        """The objects of ``ref``'s resource in ``ref.namespace`` (``ref.name`` is ignored)."""
        async with self._lock:
            doc = self._load()
            holder, key = _slot(self.who, doc, attrs.evolve(ref, name=self.who.name))
            found: list[Any] = []
            if holder is doc:  # this pod or its GameServer, kept under their own keys
                found.append(doc.get(key))
            elif holder is doc["configmaps"]:
                found += [v for _, v in sorted(holder.items())]
            prefix = f"{ref.group}/{ref.version}/{ref.resource}/{ref.namespace}/"
            found += [v for k, v in sorted(doc["objects"].items()) if k.startswith(prefix)]
            return [copy.deepcopy(v) for v in found if isinstance(v, dict)]

    async def create(self, ref: ObjectRef, body: Mapping[str, JSON]) -> dict[str, JSON]:
        def change(doc: dict[str, Any]) -> dict[str, JSON]:
            holder, key = _slot(self.who, doc, ref)
            if isinstance(holder.get(key), dict):  # ``null`` (a hand edit) is no object: get is 404
                raise ConflictError(f"{ref} already exists")
            obj = copy.deepcopy(dict(body))
            obj.setdefault("apiVersion", ref.api_version)
            meta = obj.setdefault("metadata", {})
            meta.update(name=ref.name, namespace=ref.namespace, resourceVersion="0")
            _validate(ref, obj)
            _bump(obj)
            holder[key] = obj
            return copy.deepcopy(obj)

        async with self._lock:
            return await self._write(change)

    async def record_event(self, about: ObjectRef, event: Event) -> None:
        def change(doc: dict[str, Any]) -> None:
            doc["events"] = [
                *doc.get("events", [])[-(MAX_EVENTS - 1) :],
                {
                    "involvedObject": str(about),
                    "reason": event.reason,
                    "message": event.message,
                    "type": event.type,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
            ]

        async with self._lock:
            await self._write(change)

    async def watch(self, ref: ObjectRef) -> AsyncIterator[Observation]:
        """The object now, then after every change (see the module docstring).

        A file that cannot be read (a hand edit left it invalid JSON, or a collection of
        another type) is reported once as an observation with ``error``; the next readable
        state follows as soon as it is fixed, also when the fix deletes the file (kidecar's
        last state is then reported, and written again at the next write).
        """
        wake = asyncio.Event()
        self._watchers.add(wake)
        last: Any = _ABSENT
        seen = -1  # the document's generation last compared
        failed = False
        try:
            while True:
                wake.clear()
                try:
                    # After an error, read whatever is there: a fix can bring back a file of
                    # the same identity (renamed back) or remove it, which moves no generation.
                    read = await self._read_if_changed(ref, -1 if failed else seen)
                except PermanentPersistError as e:
                    if not failed:
                        failed = True
                        yield Observation(error=e)
                else:
                    if read is not None:
                        seen, current = read
                        if current != last or failed:
                            yield Observation(current, relisted=last is _ABSENT or failed)
                            last, failed = current, False
                # asyncio.timeout, not wait_for: on 3.11, wait_for drops a cancellation that
                # arrives as the wait ends, and the watch would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await wake.wait()
        finally:
            self._watchers.discard(wake)

    async def _read_if_changed(
        self, ref: ObjectRef, seen: int
    ) -> tuple[int, dict[str, JSON] | None] | None:
        """``(the document's generation, a copy of the object)``, or ``None`` when the
        document is still generation ``seen`` (already compared): then a poll costs one
        ``stat`` rather than a copy and a comparison of the object."""
        async with self._lock:
            doc = self._load()
            if self._generation == seen:
                return None
            holder, key = _slot(self.who, doc, ref)
            obj = holder.get(key)
            return self._generation, copy.deepcopy(obj) if isinstance(obj, dict) else None

    async def close(self) -> None:
        return None


def _validate(ref: ObjectRef, obj: Mapping[str, Any]) -> None:
    """Refuse what the API server would refuse (422), with its reasons."""
    problems = metadata_problems(obj.get("metadata"))
    if problems:
        raise InvalidError(f"{ref}: rejected (as the API server would): {'; '.join(problems)}")


Signature = tuple[int, int, int]
"""A file's identity: inode, modification time in ns, size."""


def file_signature(path: Path) -> Signature | None:
    """``path``'s :data:`Signature`; ``None`` when there is no such file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def save_document(path: Path, doc: dict[str, Any], expected: Signature | None) -> Signature:
    """Write ``doc`` to ``path`` atomically (a temporary file, fsync, rename); the new file's
    signature.  :class:`_EditedMeanwhile` (nothing written) when ``path``'s signature is no
    longer ``expected`` (the one it had when last read), so that a hand edit made meanwhile is
    never overwritten by a document that does not contain it.  Blocking; raises ``OSError``.

    The signature is the temporary file's, taken before the rename (which keeps the inode, the
    modification time and the size): an edit landing right after the rename still differs
    from it, and is read at the next load rather than taken for kidecar's own document.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
            info = os.fstat(f.fileno())
        if expected is not None and file_signature(path) != expected:
            raise _EditedMeanwhile
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return (info.st_ino, info.st_mtime_ns, info.st_size)


async def _to_the_end(saving: asyncio.Future[Signature]) -> Signature:
    """``await saving``; when cancelled meanwhile, first wait until the save in its thread has
    ended (the caller keeps the store's lock until then: the file must not be replaced under a
    later write), then raise the cancellation."""
    try:
        return await asyncio.shield(saving)
    except asyncio.CancelledError:
        while not saving.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(saving)
        if not saving.cancelled():
            saving.exception()  # retrieved: the caller decides from the outcome
        raise


def _succeeded(saving: asyncio.Future[Signature]) -> bool:
    return saving.done() and not saving.cancelled() and saving.exception() is None


_SECTIONS = ("configmaps", "objects", "events")
"""The state file's collections, whose JSON type a hand edit may not change."""


def completed(path: Path, doc: Any, who: PodIdentity) -> dict[str, Any]:
    """The state file's document ``doc`` with the sections it lacks added (as
    :func:`initial_state` has them); :class:`~kidecar_core.errors.PermanentPersistError` naming
    ``path`` when it is not a JSON object or a collection has another type."""
    if not isinstance(doc, dict):
        raise PermanentPersistError(f"{path} must hold a JSON object")
    for key, default in initial_state(who).items():
        doc.setdefault(key, default)
        if key in _SECTIONS and not isinstance(doc[key], type(default)):
            want, empty = ("object", "{}") if isinstance(default, dict) else ("array", "[]")
            raise PermanentPersistError(
                f"{path}: {key!r} must be a JSON {want} ({empty} for none), "
                f"not {describe_value(doc[key], json=True)}"
            )
    return doc


def _slot(who: PodIdentity, doc: dict[str, Any], ref: ObjectRef) -> tuple[dict[str, Any], str]:
    """The mapping holding ``ref`` in the document of pod ``who`` and its key there."""
    if ref.namespace == who.namespace and ref.name == who.name:
        if (ref.group, ref.resource) == ("", "pods"):
            return doc, "pod"
        if (ref.group, ref.resource) == ("game.kruise.io", "gameservers"):
            return doc, "gameserver"
    if (ref.group, ref.resource) == ("", "configmaps") and ref.namespace == who.namespace:
        return doc["configmaps"], ref.name
    key = f"{ref.group}/{ref.version}/{ref.resource}/{ref.namespace}/{ref.name}"
    return doc["objects"], key


def temporary_name_pattern(path: Path) -> re.Pattern[str]:
    """Names of the temporary files :meth:`LocalStore._save` creates beside ``path``."""
    return re.compile(rf"^\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}$")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files a killed kidecar left beside the state file ``path``.

    Only regular files named like :meth:`LocalStore._save`'s are removed; anything else with
    such a name is left alone, with a warning. Never raises.
    """
    pattern = temporary_name_pattern(path)
    removed: list[Path] = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not pattern.match(entry.name):
            continue
        try:
            if not stat.S_ISREG(entry.lstat().st_mode):
                log.warning("left %s alone: named like a temporary state file, not a file", entry)
                continue
            entry.unlink()
        except OSError as e:
            log.warning("cannot remove the stale temporary state file %s: %s", entry, e)
            continue
        log.info("removed %s, left behind by a kidecar that was killed while saving", entry)
        removed.append(entry)
    return removed


def _bump(obj: dict[str, Any]) -> None:
    meta = obj.setdefault("metadata", {})
    try:
        meta["resourceVersion"] = str(int(meta.get("resourceVersion", "0")) + 1)
    except ValueError:
        meta["resourceVersion"] = "1"


def _objects(doc: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every object of a state document, with a key naming its place."""
    for key in ("pod", "gameserver"):
        yield key, doc.get(key)
    for section in ("configmaps", "objects"):
        holder = doc.get(section)
        if isinstance(holder, Mapping):
            for name, obj in holder.items():
                yield f"{section}/{name}", obj


def _new_versions_for_edits(old_doc: Mapping[str, Any], new_doc: Mapping[str, Any]) -> None:
    """Give each object that someone else changed in the file a new ``resourceVersion``.

    A hand edit rarely touches ``resourceVersion``; without a new one, a write prepared against
    the state before the edit would not be refused (409), as the API server would refuse it.
    """
    before = dict(_objects(old_doc))
    for key, obj in _objects(new_doc):
        previous = before.get(key)
        if not (isinstance(obj, dict) and isinstance(previous, dict)):
            continue
        meta, old_meta = obj.get("metadata"), previous.get("metadata") or {}
        if not isinstance(meta, dict) or meta.get("resourceVersion") != old_meta.get(
            "resourceVersion"
        ):
            continue
        if _without_version(obj) != _without_version(previous):
            _bump(obj)


def _without_version(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
    return {**obj, "metadata": meta}


def read_state_file(path: Path) -> Any:
    """The state file's JSON; :class:`PermanentPersistError` when it is not a regular file (a
    FIFO would block forever), too large, not UTF-8, not JSON or nested too deeply."""
    reason: object
    try:
        data = read_regular_file(path, MAX_STATE_BYTES)
        if len(data) > MAX_STATE_BYTES:
            raise ValueError(f"larger than {MAX_STATE_BYTES // 2**20} MiB")
        return json.loads(data.decode("utf-8"))
    except OSError as e:
        reason = e.strerror or e
    except ValueError as e:
        reason = e
    except RecursionError:  # json has no depth limit of its own
        reason = "JSON nested too deeply"
    raise PermanentPersistError(f"{path} is not a readable JSON file: {reason}")
