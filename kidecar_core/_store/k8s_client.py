"""The few modules of the official ``kubernetes`` client kidecar uses, without the rest.

``import kubernetes`` (or any ``kubernetes.X.Y``) runs the package ``__init__`` files first, and
``kubernetes/__init__.py`` imports ``client``, ``config``, ``dynamic``, ``watch``, ``stream``,
``utils``, ``leaderelection`` and ``informer``: with them requests, oauthlib, websocket-client
and (through ``kubernetes.client.api_client``) pydantic and python-dateutil, ~330 modules.
kidecar needs a few modules of it: ``Configuration``, the REST layer, ``ApiException`` and the
in-cluster and kubeconfig loaders.  Loading only those takes 12.8 MiB less resident memory
in-cluster, 4.7 MiB less with a kubeconfig (whose loader needs requests, oauthlib and
``ApiClient``), measured with psutil against ``python -X importtime`` (docs/benchmarks.md).

How: before importing those modules, each package on their path (``kubernetes``,
``kubernetes.client``, ``kubernetes.client.models``, ``kubernetes.config``, ``kubernetes.utils``) is
put into ``sys.modules`` as a *deferred* package: a real module made from the package's own
import spec, with ``__path__`` set (so its submodules import normally) but its ``__init__`` not
yet run.  The first access to a name the package does not have yet (``kubernetes.client.CoreV1Api``,
``getattr(kubernetes.client.models, "V1Pod")``) runs its ``__init__`` then, in the same module
object, so any other code in the process that uses the client normally gets the whole client.
When the client is already imported in full, nothing is deferred.

Only :mod:`kidecar_core._store` imports this module (the import contract of ``pyproject.toml``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

__all__ = [
    "ApiException",
    "ConfigException",
    "Configuration",
    "RestClient",
    "kube_config",
    "load_incluster_config",
]

_DEFERRED = (
    "kubernetes",
    "kubernetes.client",
    "kubernetes.client.models",
    "kubernetes.config",
    "kubernetes.utils",
)
"""Packages whose ``__init__`` waits until a name of theirs is used (parents first)."""

_lock = threading.RLock()


class _DeferredPackage(types.ModuleType):
    """A package whose ``__init__`` runs at the first lookup of a name it lacks."""

    def __getattr__(self, name: str) -> Any:
        # Only called for names not (yet) in the module's namespace (``__version__`` included).
        with _lock:
            if importlib.util.find_spec(f"{self.__name__}.{name}") is not None:
                # ``from package import submodule``: the submodule alone, as for any package.
                return importlib.import_module(f"{self.__name__}.{name}")
            spec = self.__spec__
            if self.__dict__.get("_kidecar_deferred", False):
                self.__dict__["_kidecar_deferred"] = False
                self.__class__ = types.ModuleType  # type: ignore[assignment]  # plain from now on
                assert spec is not None and spec.loader is not None
                spec.loader.exec_module(self)
        return getattr(self, name)  # the package's own lookup (it may have a ``__getattr__``)


def _defer(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(
            f"{name}: not an importable package (is the kubernetes client installed?)"
        )
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _DeferredPackage
    module.__dict__["_kidecar_deferred"] = True
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


with _lock:
    for _name in _DEFERRED:
        _defer(_name)
    from kubernetes.client.configuration import Configuration
    from kubernetes.client.exceptions import ApiException
    from kubernetes.client.rest import RESTClientObject, RESTResponse

    # What the in-cluster loader takes from the package (``from kubernetes.client import ...``).
    sys.modules["kubernetes.client"].__dict__["Configuration"] = Configuration
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.incluster_config import load_incluster_config


class RestClient:
    """Requests as ``ApiClient.param_serialize`` + ``call_api`` send them, without ``ApiClient``.

    The official client's own REST layer (``kubernetes.client.rest``: urllib3 with the
    Configuration's TLS, client certificate, proxy and timeouts) and its auth settings (the bearer
    token, refreshed by the Configuration's ``refresh_api_key_hook`` as the in-cluster and
    kubeconfig loaders set it).  ``kubernetes.client.api_client`` is not imported: it imports
    pydantic and python-dateutil for the generated models, which kidecar never uses (+4.2 MiB of
    resident memory, docs/benchmarks.md).  Request and answer bodies are JSON the caller builds and
    parses.
    """

    def __init__(self, configuration: Configuration, user_agent: str) -> None:
        self.configuration = configuration
        self.user_agent = user_agent
        # Pin the proxy the environment gives for this host.  The loaders' refresh hook (the
        # in-cluster one; the kubeconfig one for token users) assigns ``host`` again before
        # every request, and each assignment parses the proxy environment again when the proxy
        # came from it (issue 17's third pass in docs/benchmarks.md).  The value cannot change
        # meanwhile: the host is the same, and the REST layer below chooses its proxy once, when
        # it builds its connection pool.
        configuration.proxy = configuration.proxy
        self._rest = RESTClientObject(configuration)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str],
        body: object = None,
        timeout: float | tuple[float, float],
    ) -> RESTResponse:
        """Send one request to ``configuration.host + path``; the answer, body unread.

        ``body`` (a JSON value) is sent as JSON.  Raises ``ApiException`` (status 0) for TLS
        failures, urllib3's errors for connection problems; never for an HTTP status.
        """
        sent = {**headers, "User-Agent": self.user_agent}
        auth = self.configuration.auth_settings().get("BearerToken")
        if auth and auth["value"]:
            sent[auth["key"]] = auth["value"]
        url = self.configuration.host + path
        if query:
            url += "?" + urlencode(list(query), quote_via=quote)
        response: RESTResponse = self._rest.request(  # type: ignore[no-untyped-call]
            method, url, headers=sent, body=body, _request_timeout=timeout
        )
        return response

    def close(self) -> None:
        """Close the pooled connections."""
        self._rest.pool_manager.clear()


def kube_config() -> types.ModuleType:
    """``kubernetes.config.kube_config`` (imported at the first call: it brings ``requests`` and
    ``oauthlib``, for OIDC token refresh, which a pod's in-cluster configuration never needs)."""
    with _lock:
        return importlib.import_module("kubernetes.config.kube_config")
