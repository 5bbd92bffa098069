"""What the commands do: ``run`` builds the runtime from the command line and the environment;
``check-config`` and ``plugins`` load the plugins and the configuration and report.

:mod:`kidecar_core.cli` parses the command line and calls these.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO, TypeVar

from kidecar_core._config.catalog import load_file
from kidecar_core._config.loader import default_config_path
from kidecar_core._plugins.manager import Plugins
from kidecar_core._runtime import eventloop, logs
from kidecar_core._runtime.runtime import Runtime, RuntimeOptions
from kidecar_core._store.objects import ObjectStore, PodIdentity
from kidecar_core.errors import StartupError

log = logging.getLogger("kidecar")

LOCAL_DEFAULT_POD = "local-gameserver-0"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"

T = TypeVar("T")


def positive_seconds(text: str) -> float:
    """argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def log_level(text: str) -> str:
    """One of :data:`LOG_LEVELS`, any case; ``ValueError`` otherwise."""
    if text.upper() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return text.upper()


def from_env(env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    """An option's default from the environment, with the same checks as on the command line."""
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        return parse(text)
    except (argparse.ArgumentTypeError, ValueError) as e:
        raise StartupError(f"{name}: {e}") from None


def identity_from_env(env: Mapping[str, str], *, local: bool) -> PodIdentity:
    """The pod's name and namespace from ``POD_NAME``/``POD_NAMESPACE`` (the downward API)."""
    name = env.get("POD_NAME")
    namespace = env.get("POD_NAMESPACE")
    if local:
        return PodIdentity(name or LOCAL_DEFAULT_POD, namespace or "default")
    missing = [v for v, value in (("POD_NAME", name), ("POD_NAMESPACE", namespace)) if not value]
    if missing:
        raise StartupError(
            f"{' and '.join(missing)} not set: pass them from the downward API "
            "(env valueFrom.fieldRef metadata.name / metadata.namespace; `kidecar inject` does it)"
        )
    assert name and namespace
    return PodIdentity(name, namespace)


def in_cluster(env: Mapping[str, str]) -> bool:
    """Running in a pod with a ServiceAccount token (checked without importing the client)."""
    return bool(env.get("KUBERNETES_SERVICE_HOST")) and os.path.isfile(SERVICE_ACCOUNT_TOKEN)


def check_cluster_choice(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """Fail early, with what to do, when there is no cluster and no local state file."""
    if args.local_state or args.kubeconfig or in_cluster(env):
        return
    raise StartupError(
        "no cluster to talk to: not running in a pod and no --kubeconfig given.\n"
        "  kidecar run --local-state state.json    # local mode: pod + GameServer in a JSON file\n"
        "  kidecar run --kubeconfig ~/.kube/config # out of cluster, against a real API server"
    )


def open_store(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[ObjectStore, bool]:
    """The object store chosen on the command line: (store, local_mode)."""
    check_cluster_choice(args, env)
    if args.local_state:
        from kidecar_core._store.local import LocalStore

        return LocalStore(args.local_state, identity_from_env(env, local=True)), True
    # Imported here so that local mode never pays for the kubernetes client's memory.
    from kidecar_core._store import kube

    return kube.KubeStore.from_kubeconfig(args.kubeconfig or None), False


def runtime_options(args: argparse.Namespace, env: Mapping[str, str]) -> RuntimeOptions:
    """``kidecar run``'s options: the command line first, then ``$KIDECAR_*``, then defaults."""
    shutdown = args.shutdown_timeout or from_env(
        env, "KIDECAR_SHUTDOWN_TIMEOUT", positive_seconds, 20.0
    )
    resync = args.resync_seconds or from_env(env, "KIDECAR_RESYNC_SECONDS", positive_seconds, 300.0)
    return RuntimeOptions(
        admin_listen=args.admin_listen or env.get("KIDECAR_ADMIN_LISTEN") or "127.0.0.1:9090",
        shutdown_timeout=shutdown,
        resync_interval=resync,
    )


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``kidecar run``: set up logging, load plugins and config, run until stopped."""
    level = args.log_level or from_env(env, "KIDECAR_LOG_LEVEL", log_level, "INFO")
    options = runtime_options(args, env)
    logs.setup(args.log_format or logs.default_format(env), level)
    check_cluster_choice(args, env)
    path = args.config or default_config_path(env)
    plugins = Plugins.load(env, args.plugin_file)
    loaded = load_file(path, plugins, env, lenient=False)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    plugins.activate(loaded.plugins)
    identity = identity_from_env(env, local=bool(args.local_state))

    async def main() -> int:
        store, local_mode = open_store(args, env)
        runtime = Runtime(loaded, plugins, store, identity, options, local_mode=local_mode)
        return await runtime.run()

    return eventloop.run(main())  # exits even when a blocking call never returns


def check_config(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    """``kidecar check-config``: validate the file against the installed plugins."""
    path = args.path or default_config_path(env)
    plugins = Plugins.load(env, args.plugin_file)
    loaded = load_file(path, plugins, env, lenient=True)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=out)
    names = ", ".join(p.name for p in loaded.boot_sequence()) or "none"
    print(f"{path}: OK (plugins in boot order: {names})", file=out)
    return 0


def list_plugins(env: Mapping[str, str], out: TextIO, files: Sequence[str] = ()) -> int:
    """``kidecar plugins``: installed plugins, their kind and hooks; disabled and broken ones."""
    plugins = Plugins.load(env, files)
    rows: list[tuple[str, str, str, list[str]]] = [
        (
            p.name,
            f"{p.distribution} {p.version}",
            "service" if p.is_service else "extension",
            p.hooks,
        )
        for p in sorted(plugins.installed.values(), key=lambda p: p.name)
    ]
    width = max([len(r[0]) for r in rows] + [4])
    dwidth = max([len(r[1]) for r in rows] + [12])
    print(f"{'NAME':<{width}}  {'DISTRIBUTION':<{dwidth}}  {'KIND':<9}  HOOKS", file=out)
    for name, dist, kind, hooks in rows:
        short = ", ".join(h.removeprefix("kidecar_") for h in hooks)
        print(f"{name:<{width}}  {dist:<{dwidth}}  {kind:<9}  {short}", file=out)
    for name, dist_name in sorted(plugins.disabled.items()):
        line = f"{name:<{width}}  {dist_name:<{dwidth}}  disabled by KIDECAR_(DISABLE_)PLUGINS"
        print(line, file=out)
    for name, error in sorted(plugins.broken.items()):
        print(f"{name:<{width}}  broken: {error}", file=out)
    return 0
