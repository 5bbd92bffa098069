"""The Kubernetes API as an :class:`~kidecar_core._store.objects.ObjectStore`.

This is the only module of kidecar that imports the ``kubernetes`` client.  Everyone else speaks in
terms of :class:`~kidecar_core.ObjectRef` and merge patches; this module turns those into
HTTP requests and turns every failure into kidecar's error vocabulary
(:mod:`kidecar_core.errors`), so the write applier can decide between "retry with backoff" and
"report and wait for a human".

Design notes (the *why*):

* **One request path for every kind.** Requests go through the official client's REST layer and auth
  settings (:class:`~kidecar_core._store.k8s_client.RestClient`: what
  ``ApiClient.param_serialize``/``call_api`` do, with the same TLS, auth, token refresh and proxy
  handling as the generated ``CoreV1Api``/``CustomObjectsApi``), from the object's API path. The
  generated typed methods of client v37 validate request bodies into pydantic models first, which
  silently drops fields the model does not know and re-serialises ``eventTime`` with
  ``datetime.isoformat()`` (no fraction when the microseconds are 0, which the server's
  ``MicroTime`` parser rejects). A generic path sends the dict exactly as given and serves pods,
  ConfigMaps, any other core/v1 kind and any custom resource the same way.
* **Merge patch everywhere** (RFC 7386, ``application/merge-patch+json``): it means the same for
  built-in kinds and custom resources (which reject strategic merge), and ``None`` deletes a key.
  The one exception is :meth:`KubeStore.patch_status` (a pod's conditions, for ``pod_probe``):
  a merge patch would replace the whole ``conditions`` list, so it sends a strategic merge.
* **Plain dicts** with the API's camelCase keys: the body is ``json.loads``-ed, never deserialised
  into models.
* **Blocking calls off the event loop** on a small private thread pool; each call carries a
  timeout.  urllib3 itself never retries (``retries=False``): the caller retries with backoff and
  jitter, and a hidden urllib3 retry loop would only add latency and log noise.
* **No global state**: each store has its own ``Configuration`` and REST client; the client's
  process-wide default configuration is never read or written.
* **Watches on threads of their own.**  A watch is one long request whose answer is a stream of
  events; it is read on a thread of a separate pool, so that open watches never take a thread a
  write needs.  :meth:`KubeStore.open_watch` is the primitive (one request, its events);
  :mod:`.kubewatch` turns it into :meth:`KubeStore.watch` (relist, resume, bookmarks, backoff).
* **Writes carry kidecar's field manager** (``fieldManager=kidecar``), so that ``managedFields``
  tells kidecar's writes from another controller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import functools
import json
import re
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import attrs
import urllib3
import yaml

from kidecar_core._store import k8s_client as k8s
from kidecar_core._store.k8s_client import ConfigException, load_incluster_config
from kidecar_core._store.kubewatch import ExpiredError, follow
from kidecar_core._store.objects import FIELD_MANAGER, JSON, Event, ObjectRef, Observation
from kidecar_core.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    PermanentPersistError,
    StartupError,
    TransientPersistError,
)

__all__ = [
    "ExpiredError",
    "KubeStore",
    "ResourceNotServedError",
    "TransientApiError",
    "WatchStream",
    "kubeconfig_namespace",
]

MERGE_PATCH = "application/merge-patch+json"
"""RFC 7386: the patch type kidecar sends to objects (custom resources reject strategic merge)."""

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
"""Kubernetes' strategic merge: lists with a merge key (a pod's ``status.conditions``, keyed by
``type``) are merged entry by entry instead of replaced.  Only :meth:`KubeStore.patch_status`
sends it, and only to built-in kinds (custom resources reject it with 415)."""

REPORTING_COMPONENT = "kidecar"
"""``source.component`` / ``reportingComponent`` of the Events kidecar records."""

DEFAULT_WORKERS = 4
"""Threads for blocking client calls: a few writes may be in flight while a read waits."""

CORE_KINDS: Mapping[str, str] = {
    "pods": "Pod",
    "configmaps": "ConfigMap",
    "secrets": "Secret",
    "services": "Service",
    "serviceaccounts": "ServiceAccount",
    "endpoints": "Endpoints",
    "events": "Event",
    "persistentvolumeclaims": "PersistentVolumeClaim",
    "podtemplates": "PodTemplate",
    "replicationcontrollers": "ReplicationController",
    "resourcequotas": "ResourceQuota",
    "limitranges": "LimitRange",
}
"""Kind of each namespaced core/v1 resource, to fill ``kind`` into bodies :meth:`create` sends.
Custom resources cannot be mapped (the plural does not determine the kind): their bodies must
carry ``kind`` themselves."""

MAX_WATCHES = 8
"""Watch streams one store may hold open at once (kidecar's own: its Pod and its GameServer)."""

WATCH_READ_TIMEOUT = 150.0
"""Seconds without a byte on a watch before its connection is taken for dead.  The API server
sends a bookmark about once a minute to a watch that allows them (measured: every 60 s on
v1.34), so a healthy watch is never silent this long."""

_WATCH_CHUNK = 64 * 1024

_MAX_SERVER_TEXT = 500
"""Longest piece of a server's answer quoted in an error (a proxy may answer with a whole page)."""


class TransientApiError(TransientPersistError):
    """The API server is unreachable, too slow, overloaded (429) or failing (5xx).

    ``retry_after`` is the server's ``Retry-After`` in seconds when it sent one (the caller's
    backoff should wait at least that long); ``status`` is the HTTP status, ``None`` when no
    answer arrived at all.
    """

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ResourceNotServedError(NotFoundError):
    """404 for the resource *type*: the API server does not serve it (a CRD is not installed).

    Unlike a missing object, this is raised by :meth:`KubeStore.get` too: waiting for an object
    of a type the cluster does not know would never end.
    """


class KubeStore:
    """Objects in a Kubernetes cluster, read and written through kube-apiserver.

    Build one with :meth:`from_kubeconfig`; :meth:`close` it when done (it owns a thread pool and
    pooled connections).  Methods raise the errors of :mod:`kidecar_core.errors`:

    * :class:`TransientApiError` (a ``TransientPersistError``): connection problems, timeouts,
      429 and 5xx;
    * ``ConflictError``: 409 (stale ``resourceVersion``, or the object already exists);
    * ``NotFoundError``: 404 (:class:`ResourceNotServedError` when the type is not served);
    * ``ForbiddenError``: 403, naming the Role rule that is missing;
    * ``InvalidError``: 400/422, with the server's explanation (it names the bad field);
    * ``PermanentPersistError``: rejected credentials (401), TLS verification failures and any
      other answer.
    """

    def __init__(
        self,
        configuration: k8s.Configuration,
        *,
        request_timeout: float = 10.0,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        """Use ``configuration`` (which this store now owns and adjusts) for all requests."""
        # urllib3 must answer at once: the write applier owns retries, backoff and jitter.
        configuration.retries = False
        # Room for every worker's request and every open watch, so none is ever discarded.
        configuration.connection_pool_maxsize = workers + MAX_WATCHES
        self._api = k8s.RestClient(configuration, user_agent="kidecar")
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kidecar-kube")
        self._timeout = request_timeout
        self.description = f"kube-apiserver {configuration.host}"
        self._watches = _WatchRequests(self._api, request_timeout, self.description)
        self.watch_timeout: tuple[int, int] = (1800, 3600)
        """Bounds of the ``timeoutSeconds`` each watch request asks for, drawn at random: the
        server ends a watch after that long and kidecar resumes it (one request)."""
        self._involved: dict[ObjectRef, dict[str, JSON]] = {}
        self._closed = False

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | None,
        *,
        request_timeout: float = 10.0,
        context: str | None = None,
    ) -> KubeStore:
        """A store for the cluster of kubeconfig ``path`` (its ``context``, default: current).

        ``path=None`` means in-cluster: the pod's ServiceAccount token (re-read as the kubelet
        rotates it) and CA.  Raises :class:`~kidecar_core.errors.StartupError` when the
        configuration cannot be loaded.
        """
        return cls(load_configuration(path, context), request_timeout=request_timeout)

    async def get(self, ref: ObjectRef) -> dict[str, JSON] | None:
        """The object as a plain dict, or ``None`` when it does not exist."""
        try:
            return await self._request("get", ref, "GET", _object_path(ref))
        except ResourceNotServedError:
            raise
        except NotFoundError:
            return None

    async def patch(self, ref: ObjectRef, patch: Mapping[str, JSON]) -> dict[str, JSON]:
        """Merge-patch the object (RFC 7386; ``None`` deletes a key); return it after the patch.

        Put ``metadata.resourceVersion`` into the patch for optimistic concurrency: a stale one is
        answered with :class:`~kidecar_core.errors.ConflictError`.
        """
        return await self._request(
            "patch",
            ref,
            "PATCH",
            _object_path(ref) + f"?fieldManager={FIELD_MANAGER}",
            body=_plain(patch),
            content_type=MERGE_PATCH,
        )

    async def patch_status(self, ref: ObjectRef, patch: Mapping[str, JSON]) -> dict[str, JSON]:
        """Strategic-merge-patch the ``status`` subresource of a built-in object (``pods/status``).

        A pod's ``status.conditions`` entries are merged by ``type``, so other conditions (the
        kubelet's) stay.  RBAC verb ``patch`` on ``<resource>/status``; errors as :meth:`patch`.
        """
        status = attrs.evolve(ref, resource=f"{ref.resource}/status")  # names it in errors
        path = f"{_object_path(ref)}/status"
        body = _plain(patch)
        return await self._request(
            "patch", status, "PATCH", path, body=body, content_type=STRATEGIC_MERGE_PATCH
        )

    async def list(self, ref: ObjectRef, *, label_selector: str = "") -> list[dict[str, JSON]]:
        """The objects of ``ref``'s resource in ``ref.namespace`` (``ref.name`` is ignored),
        filtered by ``label_selector`` (``app=game,tier!=db``); one request, no paging (for a
        handful of objects).  Errors as for :meth:`get`."""
        path = _collection_path(ref)
        if label_selector:
            path += f"?labelSelector={quote(label_selector, safe='')}"
        items = (await self._request("list", ref, "GET", path)).get("items")
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    async def create(self, ref: ObjectRef, body: Mapping[str, JSON]) -> dict[str, JSON]:
        """Create the object from ``body``; return it as stored.

        ``apiVersion``, ``metadata.name`` and ``metadata.namespace`` are filled from ``ref`` when
        missing, and ``kind`` for core/v1 resources; a custom resource's body must name its kind.
        An existing object is a :class:`~kidecar_core.errors.ConflictError`.
        """
        document = _plain(body)
        metadata = document.get("metadata") or {}
        for key, value in (("name", ref.name), ("namespace", ref.namespace)):
            given = metadata.setdefault(key, value)
            if given != value:
                raise ValueError(
                    f"create {ref}: body has metadata.{key}={given!r}, ref says {value!r}"
                )
        document["metadata"] = metadata
        document.setdefault("apiVersion", ref.api_version)
        if not ref.group and ref.resource in CORE_KINDS:
            document.setdefault("kind", CORE_KINDS[ref.resource])
        return await self._request("create", ref, "POST", _collection_path(ref), body=document)

    async def record_event(self, about: ObjectRef, event: Event) -> None:
        """Create a core/v1 Event about ``about`` (normally the pod) in its namespace.

        The object is read once to learn its uid and kind (cached): an Event whose
        ``involvedObject`` carries them is listed by ``kubectl describe``.
        """
        involved = self._involved.get(about)
        if involved is None:
            obj = await self.get(about)
            if obj is None:
                raise NotFoundError(f"cannot record event {event.reason!r}: {about} does not exist")
            involved = self._involved[about] = _involved_object(about, obj)
        body = _event_body(about, involved, event)
        name = body["metadata"]["name"]
        target = ObjectRef("", "v1", "events", about.namespace, name)
        await self._request("create", target, "POST", _collection_path(target), body=body)

    def watch(self, ref: ObjectRef) -> AsyncIterator[Observation]:
        """Follow the object by name (see :func:`~kidecar_core._store.kubewatch.follow`)."""
        return follow(self, ref)

    async def open_watch(
        self, ref: ObjectRef, *, resource_version: str | None, timeout_seconds: int
    ) -> WatchStream:
        """Send one watch request for the object named ``ref.name``; its stream of events.

        The request selects the object by name (``fieldSelector=metadata.name=...``, which a
        Role restricted with ``resourceNames`` also allows), allows bookmarks, and starts after
        ``resource_version`` (``None``: the current state comes first, as an ``ADDED`` event).
        Raises the errors of :meth:`get` (verb ``watch`` in a 403), and
        :class:`ExpiredError` when ``resource_version`` is too old (410).
        """
        if self._closed:
            raise RuntimeError(f"{self.description}: store is closed")
        return await self._watches.open(ref, resource_version, timeout_seconds)

    async def close(self) -> None:
        """Close open watches and pooled connections and stop the threads (waits for calls in
        flight)."""
        if self._closed:
            return
        self._closed = True
        self._watches.close_all()
        await asyncio.get_running_loop().run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._executor.shutdown(wait=True)
        self._watches.shutdown()
        self._api.close()

    async def _request(
        self,
        verb: str,
        ref: ObjectRef,
        method: str,
        path: str,
        *,
        body: dict[str, JSON] | None = None,
        content_type: str | None = None,
    ) -> dict[str, JSON]:
        """Send one request on a worker thread; the answer's JSON object, or a kidecar error.

        ``verb`` is the RBAC verb of the request, for the messages of 403 errors.
        """
        if self._closed:
            raise RuntimeError(f"{self.description}: store is closed")
        send = functools.partial(self._send, method, path, body, content_type)
        try:
            status, headers, data = await asyncio.get_running_loop().run_in_executor(
                self._executor, send
            )
        except k8s.ApiException as exc:
            # The REST layer turns TLS failures into ApiException(status=0).
            raise _tls_error(verb, ref, self.description, str(exc.reason)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientApiError(
                f"{verb} {ref}: {self.description} unreachable: {_connection_problem(exc)}"
            ) from None
        if 200 <= status <= 299:
            return _answer(f"{verb} {ref}: {self.description}", status, data)
        raise _error_for(verb, ref, status, headers, data, self.description)

    def _send(
        self, method: str, path: str, body: dict[str, JSON] | None, content_type: str | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """The blocking part (worker thread): status, headers and the whole body of one request."""
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        response = self._api.request(
            method, path, headers=headers, body=body, timeout=self._timeout
        )
        # Reading the whole body also hands the connection back to the pool.
        data = response.read()  # type: ignore[no-untyped-call]
        return response.status, response.headers, data


def _answer(what: str, status: int, data: bytes) -> dict[str, JSON]:
    """The JSON object of a 2xx answer; :class:`TransientApiError` when the body is not one
    (``what`` is "<verb> <ref>: <server>", for the message)."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise TransientApiError(
            f"{what} answered {status} with a body that is not JSON: {_snippet(data)}",
            status=status,
        ) from exc
    if not isinstance(document, dict):
        raise TransientApiError(f"{what} answered {status} with a non-object body", status=status)
    return document


class _WatchRequests:
    """Watch requests of one store, sent and read on threads of their own (see
    :meth:`KubeStore.open_watch`)."""

    def __init__(self, api: k8s.RestClient, timeout: float, server: str) -> None:
        self._api = api
        self._timeout = timeout
        self._server = server
        self._executor = ThreadPoolExecutor(
            max_workers=MAX_WATCHES, thread_name_prefix="kidecar-watch"
        )
        self._streams: set[WatchStream] = set()

    async def open(self, ref: ObjectRef, rv: str | None, timeout_seconds: int) -> WatchStream:
        query = [
            ("fieldSelector", f"metadata.name={ref.name}"),
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if rv:
            query.append(("resourceVersion", rv))
        loop = asyncio.get_running_loop()
        send = functools.partial(self._send, _collection_path(ref), query)
        try:
            response = await loop.run_in_executor(self._executor, send)
        except k8s.ApiException as exc:
            raise _tls_error("watch", ref, self._server, str(exc.reason)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientApiError(
                f"watch {ref}: {self._server} unreachable: {_connection_problem(exc)}"
            ) from None
        if response.status != 200:
            data = await loop.run_in_executor(self._executor, _read_and_release, response)
            status, headers = response.status, response.headers
            raise _error_for("watch", ref, status, headers, data, self._server)
        stream = WatchStream(ref, response, self._executor, self._streams.discard)
        self._streams.add(stream)
        return stream

    def _send(self, path: str, query: list[tuple[str, str]]) -> urllib3.BaseHTTPResponse:
        """The blocking part of :meth:`open` (watch thread): the response, body unread."""
        timeout = (self._timeout, WATCH_READ_TIMEOUT)
        response = self._api.request(
            "GET", path, query=query, headers={"Accept": "application/json"}, timeout=timeout
        )
        raw: urllib3.BaseHTTPResponse = response.response
        return raw

    def close_all(self) -> None:
        for stream in list(self._streams):
            stream.close()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


class WatchStream:
    """The events of one open watch request, read on a watch thread.

    :meth:`next` returns the next event (a dict with ``type`` and ``object``) or ``None`` when
    the server ended the stream (its ``timeoutSeconds`` passed); it raises
    :class:`TransientApiError` when the connection fails or stays silent longer than
    :data:`WATCH_READ_TIMEOUT`.  :meth:`close` ends the request from any thread, at once.
    """

    def __init__(
        self,
        ref: ObjectRef,
        response: urllib3.BaseHTTPResponse,
        executor: ThreadPoolExecutor,
        on_close: Callable[[WatchStream], None],
    ) -> None:
        self.ref = ref
        self._response = response
        self._executor = executor
        self._on_close = on_close
        self._buffer = b""
        self._closed = False

    async def next(self) -> dict[str, JSON] | None:
        while b"\n" not in self._buffer:
            chunk = await asyncio.get_running_loop().run_in_executor(self._executor, self._read)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            event = json.loads(line)
        except ValueError:
            raise TransientApiError(f"watch {self.ref}: malformed event {_snippet(line)}") from None
        if not isinstance(event, dict):
            raise TransientApiError(f"watch {self.ref}: malformed event {_snippet(line)}")
        return event

    def _read(self) -> bytes:
        if self._closed:
            return b""
        try:
            return self._response.read1(_WATCH_CHUNK)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if self._closed:
                return b""
            if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
                raise TransientApiError(
                    f"watch {self.ref}: nothing received for {WATCH_READ_TIMEOUT:g}s"
                ) from None
            raise TransientApiError(
                f"watch {self.ref}: connection lost: {_connection_problem(exc)}"
            ) from None

    def close(self) -> None:
        """End the request: a read in progress on the watch thread returns at once."""
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        with contextlib.suppress(Exception):
            self._response.shutdown()
        with contextlib.suppress(Exception):
            self._response.close()


def _involved_object(about: ObjectRef, obj: Mapping[str, JSON]) -> dict[str, JSON]:
    """The ``involvedObject`` of an Event about ``obj``: with its uid and kind, so that
    ``kubectl describe`` lists the Event."""
    metadata = obj.get("metadata") or {}
    uid = metadata.get("uid") if isinstance(metadata, dict) else None
    return {
        "apiVersion": obj.get("apiVersion") or about.api_version,
        "kind": obj.get("kind") or CORE_KINDS.get(about.resource, about.resource),
        "name": about.name,
        "namespace": about.namespace,
        "uid": uid,
    }


def _event_body(about: ObjectRef, involved: dict[str, JSON], event: Event) -> dict[str, JSON]:
    """A core/v1 Event about ``about`` (whose ``involvedObject`` is ``involved``), named
    ``<object>.<random>``, stamped now."""
    now = dt.datetime.now(dt.UTC)
    # An Event carrying eventTime must also name reportingComponent/-Instance and an action;
    # first/lastTimestamp keep it visible to `kubectl get events` and older tools.
    seconds = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    name = f"{about.name[: 253 - 17]}.{secrets.token_hex(8)}"
    body: dict[str, JSON] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": about.namespace},
        "involvedObject": involved,
        "reason": event.reason[:128],
        "message": event.message[:1024],
        "type": event.type,
        "count": 1,
        "firstTimestamp": seconds,
        "lastTimestamp": seconds,
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "source": {"component": REPORTING_COMPONENT},
        "reportingComponent": REPORTING_COMPONENT,
        "reportingInstance": socket.gethostname()[:128] or REPORTING_COMPONENT,
        "action": event.reason[:128],
    }
    return body


def load_configuration(path: str | None, context: str | None = None) -> k8s.Configuration:
    """The client configuration of kubeconfig ``path`` (its ``context``, default: current), or
    in-cluster (the ServiceAccount token and CA) when ``path`` is ``None``.

    Raises :class:`~kidecar_core.errors.StartupError` naming the source when it cannot be loaded.
    """
    configuration = k8s.Configuration()
    try:
        if path is None:
            load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            # persist_config=False: never rewrite the user's kubeconfig file.
            k8s.kube_config().load_kube_config(
                config_file=path,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError, ValueError, yaml.YAMLError) as exc:
        source = "in-cluster configuration" if path is None else f"kubeconfig {path}"
        raise StartupError(f"cannot load {source}: {exc}") from exc
    return configuration


def kubeconfig_namespace(path: str | None, context: str | None = None) -> str | None:
    """The namespace of the kubeconfig's ``context`` (default: the current one), as kubectl
    uses it when no ``--namespace`` is given; ``None`` when it names none. Raises
    :class:`~kidecar_core.errors.StartupError` when the kubeconfig cannot be read."""
    try:
        contexts, current = k8s.kube_config().list_kube_config_contexts(config_file=path)
    except (ConfigException, OSError, ValueError, yaml.YAMLError) as exc:
        raise StartupError(f"cannot load kubeconfig {path or '~/.kube/config'}: {exc}") from exc
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    if context and chosen is None:
        raise StartupError(f"kubeconfig {path or '~/.kube/config'} has no context {context!r}")
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def _read_and_release(response: urllib3.BaseHTTPResponse) -> bytes:
    try:
        return response.read()
    finally:
        response.release_conn()


def _plain(document: Mapping[str, JSON]) -> dict[str, JSON]:
    """A deep copy made of dicts and lists only.

    The client serialises only ``dict``/``list`` structurally; any other mapping (a read-only
    view, a frozen mapping from a config object) would be sent as its attributes.
    """

    def convert(value: JSON) -> JSON:
        if isinstance(value, Mapping):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    result: dict[str, JSON] = convert(document)
    return result


def _api_prefix(ref: ObjectRef) -> str:
    base = f"/apis/{ref.group}/{ref.version}" if ref.group else f"/api/{ref.version}"
    return f"{base}/namespaces/{_quote(ref.namespace)}/{_quote(ref.resource)}"


def _collection_path(ref: ObjectRef) -> str:
    return _api_prefix(ref)


def _object_path(ref: ObjectRef) -> str:
    return f"{_api_prefix(ref)}/{_quote(ref.name)}"


def _quote(segment: str) -> str:
    """One path segment, percent-encoded (names come from config and the downward API)."""
    if not segment:
        raise ValueError("empty name in an object reference")
    return quote(segment, safe="")


def _resource_name(ref: ObjectRef) -> str:
    """``gameservers.game.kruise.io`` / ``pods``: the resource as RBAC and kubectl name it."""
    return f"{ref.resource}.{ref.group}" if ref.group else ref.resource


def _status_of(data: bytes) -> dict[str, Any]:
    """The ``Status`` object of an error answer (empty when the body is not one)."""
    try:
        document = json.loads(data)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _snippet(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text if len(text) <= _MAX_SERVER_TEXT else text[:_MAX_SERVER_TEXT] + "..."


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), ``None`` when absent/garbled."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


_USER = re.compile(r'User "([^"]+)"')


def _forbidden(verb: str, ref: ObjectRef, message: str) -> ForbiddenError:
    """A 403 as a :class:`ForbiddenError` that says which Role rule would allow the request."""
    user = _USER.search(message)
    who = user.group(1) if user else "kidecar's identity"
    resource = _resource_name(ref)
    if "cannot" in message:
        group = ref.group or '""'
        text = (
            f"forbidden: {who} can't {verb} {resource} in namespace {ref.namespace}: add "
            f"{{apiGroups: [{group}], resources: [{ref.resource}], verbs: [{verb}]}} to the Role "
            f"bound to it"
        )
    else:
        # Not RBAC (e.g. the namespace is being deleted): the server's words explain it best.
        text = f"forbidden: {verb} {ref}: {message}"
    return ForbiddenError(text, verb=verb, group=ref.group, resource=ref.resource)


def _error_for(
    verb: str,
    ref: ObjectRef,
    status: int,
    headers: Mapping[str, str],
    data: bytes,
    server: str,
) -> Exception:
    """The kidecar error for a non-2xx answer to ``verb`` on ``ref``."""
    document = _status_of(data)
    message = str(document.get("message") or _snippet(data) or "no details")
    where = f"{verb} {ref}"
    if status == 404:
        details = document.get("details")
        # A 404 without the object's name in its details means the type itself is not served
        # (e.g. the GameServer CRD is not installed): waiting for the object would never end.
        if not (isinstance(details, dict) and details.get("name")):
            return ResourceNotServedError(
                f"{where}: {server} does not serve {_resource_name(ref)}/{ref.version} "
                f"(is its CRD installed?): {message}"
            )
        return NotFoundError(f"{where}: not found ({message})")
    if status == 409:
        return ConflictError(f"{where}: conflict: {message}")
    if status == 410:
        return ExpiredError(f"{where}: expired: {message}")
    if status == 403:
        return _forbidden(verb, ref, message)
    if status in (400, 422):
        return InvalidError(f"{where}: rejected by the API server: {message}")
    if status == 401:
        return PermanentPersistError(
            f"{where}: {server} rejected kidecar's credentials (401 Unauthorized): check the "
            "ServiceAccount token or kubeconfig"
        )
    if status in (408, 429) or status >= 500:
        retry_after = _retry_after(headers)
        hint = f" (retry after {retry_after:g}s)" if retry_after is not None else ""
        return TransientApiError(
            f"{where}: {server} answered {status}{hint}: {message}",
            status=status,
            retry_after=retry_after,
        )
    return PermanentPersistError(f"{where}: {server} answered {status}: {message}")


def _connection_problem(exc: BaseException) -> str:
    """What went wrong with the connection, without urllib3's wrapping and repetition."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and reason is not None:
        exc = reason
    return f"{type(exc).__name__}: {exc}"


def _tls_error(verb: str, ref: ObjectRef, server: str, reason: str) -> Exception:
    """A TLS failure: a certificate the CA does not vouch for will not fix itself; others may."""
    text = " ".join(reason.split())
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return PermanentPersistError(
            f"{verb} {ref}: cannot verify the TLS certificate of {server}: {text}"
        )
    return TransientApiError(f"{verb} {ref}: TLS failure talking to {server}: {text}")
