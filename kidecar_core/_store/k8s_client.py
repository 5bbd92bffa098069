"""The few modules of the official ``kubernetes`` client kidecar uses, without the rest.

``import kubernetes`` (or any ``kubernetes.client.X``) runs the package ``__init__`` files first,
and those import everything: ``kubernetes/__init__.py`` imports ``client``, ``config``,
``dynamic``, ``watch``, ``stream``, ``utils``, ``leaderelection`` and ``informer``;
``kubernetes/client/__init__.py`` imports every generated API class and, through
``kubernetes.client.models``, all ~900 pydantic models.  kidecar needs five modules of it
(``Configuration``, ``ApiClient``, ``ApiException``, the in-cluster and kubeconfig loaders); the
rest cost ~20 MiB of resident memory and ~0.3 s of start-up (measured with ``python -X importtime``
and psutil; numbers in docs/benchmarks.md, figure 1).

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
from typing import Any

__all__ = ["ApiClient", "ApiException", "ConfigException", "Configuration", "load_incluster_config"]

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
    from kubernetes.client.api_client import ApiClient
    from kubernetes.client.configuration import Configuration
    from kubernetes.client.exceptions import ApiException

    # What the config modules take from the package (``from kubernetes.client import ...``).
    _package = sys.modules["kubernetes.client"]
    _package.__dict__.update(ApiClient=ApiClient, Configuration=Configuration)
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.incluster_config import load_incluster_config


def kube_config() -> types.ModuleType:
    """``kubernetes.config.kube_config`` (imported at the first call: it brings ``requests`` and
    ``oauthlib``, for OIDC token refresh, which a pod's in-cluster configuration never needs)."""
    with _lock:
        return importlib.import_module("kubernetes.config.kube_config")
