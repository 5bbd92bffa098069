"""The ``kidecar`` command line.

Exit codes: 0 success (and graceful stop), 1 cannot start, 2 invalid configuration or usage.
User mistakes print a message, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from kidecar_core import __version__
from kidecar_core._config.loader import (
    LoadedConfig,
    PluginCatalog,
    TemplateContext,
    default_config_path,
    load_config,
    read_yaml,
)
from kidecar_core._plugins.manager import Plugins
from kidecar_core._store.objects import ObjectStore, PodIdentity
from kidecar_core.errors import ConfigError, KidecarError, StartupError

log = logging.getLogger("kidecar")

EXIT_STARTUP = 1
EXIT_CONFIG = 2

LOCAL_DEFAULT_POD = "local-gameserver-0"


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def positive_seconds(text: str) -> float:
    """argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def from_env(env: Mapping[str, str], name: str, parse: Any, default: Any) -> Any:
    """An option's default from the environment, with the same checks as on the command line."""
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        return parse(text)
    except (argparse.ArgumentTypeError, ValueError) as e:
        raise StartupError(f"{name}: {e}") from None


def log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return text.upper()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kidecar",
        description="A pluggable sidecar for OpenKruiseGame game-server pods.",
    )
    parser.add_argument("--version", action="version", version=f"kidecar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the sidecar")
    run.add_argument(
        "--config",
        help="config file (default: $KIDECAR_CONFIG, else /opt/sidecar/config.yaml)",
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument("--kubeconfig", help="talk to the cluster of this kubeconfig")
    where.add_argument(
        "--local-state",
        metavar="PATH",
        help="local mode: keep the pod and its GameServer in this JSON file (no cluster)",
    )
    run.add_argument(
        "--admin-listen",
        help="admin server address (default: $KIDECAR_ADMIN_LISTEN, else 127.0.0.1:9090)",
    )
    run.add_argument(
        "--log-format", choices=["text", "json"], help="default: json in a pod, text elsewhere"
    )
    run.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="default: $KIDECAR_LOG_LEVEL, else INFO",
    )
    run.add_argument(
        "--shutdown-timeout",
        type=positive_seconds,
        help="seconds for a graceful stop, below terminationGracePeriodSeconds "
        "(default: $KIDECAR_SHUTDOWN_TIMEOUT, else 20)",
    )
    run.add_argument(
        "--resync-seconds",
        type=positive_seconds,
        help="re-assert the desired state this often, in case someone else changed it "
        "(default: $KIDECAR_RESYNC_SECONDS, else 300)",
    )
    run.add_argument(
        "--plugin-file",
        action="append",
        default=[],
        metavar="PATH",
        help="load hook implementations from a local Python file (repeatable), "
        "like pytest's conftest.py; also $KIDECAR_PLUGIN_FILES (comma-separated)",
    )

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path", nargs="?", help="config file (default: as for run)")
    check.add_argument("--plugin-file", action="append", default=[], metavar="PATH")

    listing = sub.add_parser("plugins", help="list installed plugins and the hooks they implement")
    listing.add_argument("--plugin-file", action="append", default=[], metavar="PATH")

    inject = sub.add_parser(
        "inject",
        help="print a workload with the sidecar added (like linkerd inject)",
        description="Print the workload (Pod, Deployment, StatefulSet, ReplicaSet, DaemonSet, Job, "
        "CronJob, GameServerSet; multi-document YAML) with the kidecar sidecar added, as the "
        "config and its plugins need it. Idempotent: injecting twice is the same as once. "
        "Comments are dropped, except those that open the file. "
        "Usage: kidecar inject -f gss.yaml --config config.yaml | kubectl apply -f -",
    )
    inject.add_argument(
        "-f", "--filename", required=True, metavar="WORKLOAD", help="YAML file; - for stdin"
    )
    inject.add_argument(
        "--config",
        required=True,
        help="the sidecar config: a config.yaml, or a ConfigMap manifest holding it",
    )
    inject.add_argument(
        "--image", help="sidecar image (default: $KIDECAR_IMAGE, else kidecar:<version>)"
    )
    inject.add_argument(
        "--config-map",
        metavar="NAME",
        help="ConfigMap holding config.yaml (default: the name of the --config ConfigMap, "
        "else kidecar-config)",
    )
    inject.add_argument(
        "--container", metavar="NAME", help="the game's main container (default: the first)"
    )
    inject.add_argument(
        "--admin-port",
        type=int,
        default=9090,
        metavar="PORT",
        help="port of the sidecar's /healthz, /readyz and /metrics (default 9090)",
    )
    inject.add_argument(
        "--service-account",
        default="kidecar",
        metavar="NAME",
        help="serviceAccountName for pods that set none (default kidecar, from deploy/base; "
        "'' leaves it alone)",
    )
    inject.add_argument("--plugin-file", action="append", default=[], metavar="PATH")

    demo = sub.add_parser(
        "demo", help="watch kidecar probe a demo game and hot-update it (local, no cluster)"
    )
    demo.add_argument(
        "--pace", type=float, default=1.0, help="seconds to pause between steps (default 1)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    env = dict(os.environ)
    try:
        if args.command == "run":
            return cmd_run(args, env)
        if args.command == "check-config":
            return cmd_check_config(args, env, sys.stdout)
        if args.command == "plugins":
            return cmd_plugins(env, sys.stdout, args.plugin_file)
        if args.command == "inject":
            return cmd_inject(args, env, sys.stdin, sys.stdout, sys.stderr)
        if args.command == "demo":
            from kidecar_core._demo import runner

            return runner.main(pace=args.pace)
        parser.print_help()
        return EXIT_CONFIG
    except ConfigError as e:
        print_config_error(e, sys.stderr)
        return EXIT_CONFIG
    except KidecarError as e:
        print(f"kidecar: error: {e}", file=sys.stderr)
        return EXIT_STARTUP
    except KeyboardInterrupt:
        return 130


def print_config_error(error: ConfigError, out: TextIO) -> None:
    count = len(error.problems)
    print(f"kidecar: invalid configuration ({count} problem{'s' * (count != 1)}):", file=out)
    for p in error.problems:
        print(f"  {p}", file=out)


def load_plugins(env: Mapping[str, str], files: Sequence[str]) -> Plugins:
    plugins = Plugins(env)
    plugins.load_entry_points()
    extra = [f for f in env.get("KIDECAR_PLUGIN_FILES", "").split(",") if f.strip()]
    for path in [*extra, *files]:
        plugins.load_file(path.strip())
    return plugins


def load(path: str, plugins: Plugins, env: Mapping[str, str], *, lenient: bool) -> LoadedConfig:
    """Read and validate the config against the installed plugins."""
    return load_parsed(read_yaml(path), plugins, env, lenient=lenient)


def load_parsed(
    raw: Any, plugins: Plugins, env: Mapping[str, str], *, lenient: bool
) -> LoadedConfig:
    """Validate an already parsed config against the installed plugins."""
    storage = plugins.storage_types()
    catalog = PluginCatalog(
        installed=plugins.service_plugins(),
        schema_for=plugins.config_schema,
        disabled=frozenset(plugins.disabled),
    )
    try:
        return load_config(raw, catalog, storage, TemplateContext(env, lenient=lenient))
    except ConfigError as e:
        raise ConfigError(e.problems) from None


def cmd_check_config(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    path = args.path or default_config_path(env)
    plugins = load_plugins(env, args.plugin_file)
    loaded = load(path, plugins, env, lenient=True)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=out)
    names = ", ".join(p.name for p in loaded.boot_sequence()) or "none"
    print(f"{path}: OK (plugins in boot order: {names})", file=out)
    return 0


def cmd_plugins(env: Mapping[str, str], out: TextIO, files: Sequence[str] = ()) -> int:
    plugins = load_plugins(env, files)
    rows = [
        (p.name, p.distribution, p.version, "service" if p.is_service else "extension", p.hooks)
        for p in sorted(plugins.installed.values(), key=lambda p: p.name)
    ]
    width = max([len(r[0]) for r in rows] + [4])
    dwidth = max([len(f"{r[1]} {r[2]}") for r in rows] + [12])
    print(f"{'NAME':<{width}}  {'DISTRIBUTION':<{dwidth}}  {'KIND':<9}  HOOKS", file=out)
    for name, dist, version, kind, hooks in rows:
        short = ", ".join(h.removeprefix("kidecar_") for h in hooks)
        print(f"{name:<{width}}  {dist + ' ' + version:<{dwidth}}  {kind:<9}  {short}", file=out)
    for name, dist in sorted(plugins.disabled.items()):
        print(
            f"{name:<{width}}  {dist:<{dwidth}}  disabled by KIDECAR_(DISABLE_)PLUGINS",
            file=out,
        )
    for name, error in sorted(plugins.broken.items()):
        print(f"{name:<{width}}  broken: {error}", file=out)
    return 0


def cmd_inject(
    args: argparse.Namespace, env: Mapping[str, str], stdin: TextIO, out: TextIO, err: TextIO
) -> int:
    from kidecar_core._inject import inject

    plugins = load_plugins(env, args.plugin_file)
    try:
        raw = read_yaml(args.config)
        config_map = args.config_map
        embedded = inject.embedded_config(raw)
        if embedded is not None:
            raw, config_map = embedded[0], config_map or embedded[1]
        loaded = load_parsed(raw, plugins, env, lenient=True)
        for warning in loaded.warnings:
            print(f"kidecar inject: warning: {warning}", file=err)
        plugins.activate(loaded.plugins)
        sidecar = inject.sidecar_from_config(loaded, plugins)
        options = inject.options_from(
            image=args.image or inject.default_image(env),
            config_map=config_map,
            container=args.container,
            admin_port=args.admin_port,
            service_account=args.service_account,
        )
    except inject.InjectError as e:
        print(f"kidecar inject: {e}", file=err)
        return EXIT_CONFIG
    source = "<stdin>" if args.filename == "-" else args.filename
    try:
        text = inject.read_text(args.filename, stdin)
        docs = inject.load_documents(text, source)
        if not any(doc is not None for doc in docs):
            raise inject.InjectError("no Kubernetes objects in it")
        injected, notes = inject.inject_documents(docs, sidecar, options)
    except inject.InjectError as e:
        print(f"kidecar inject: {source}: {e}", file=err)
        return EXIT_CONFIG
    for note in notes:
        print(f"kidecar inject: note: {note}", file=err)
    out.write(inject.leading_comment(text) + inject.dump_documents(injected))
    return 0


def identity_from_env(env: Mapping[str, str], *, local: bool) -> PodIdentity:
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


SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


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


def cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from kidecar_core._runtime import logs
    from kidecar_core._runtime.supervisor import Runtime, RuntimeOptions

    level = args.log_level or from_env(env, "KIDECAR_LOG_LEVEL", log_level, "INFO")
    shutdown_timeout = args.shutdown_timeout or from_env(
        env, "KIDECAR_SHUTDOWN_TIMEOUT", positive_seconds, 20.0
    )
    resync = args.resync_seconds or from_env(env, "KIDECAR_RESYNC_SECONDS", positive_seconds, 300.0)
    logs.setup(args.log_format or logs.default_format(env), level)
    check_cluster_choice(args, env)
    path = args.config or default_config_path(env)
    plugins = load_plugins(env, args.plugin_file)
    loaded = load(path, plugins, env, lenient=False)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    plugins.activate(loaded.plugins)
    local = bool(args.local_state)
    identity = identity_from_env(env, local=local)
    options = RuntimeOptions(
        admin_listen=args.admin_listen or env.get("KIDECAR_ADMIN_LISTEN") or "127.0.0.1:9090",
        shutdown_timeout=shutdown_timeout,
        resync_interval=resync,
    )

    async def main() -> int:
        store, local_mode = open_store(args, env)
        runtime = Runtime(loaded, plugins, store, identity, options, local_mode=local_mode)
        return await runtime.run()

    return asyncio.run(main())
