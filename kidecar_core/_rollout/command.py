"""The ``kidecar rollout`` command line: arguments, cluster access, exit codes.

Exit codes: 0 done; 1 refused by the cluster's state or the cluster cannot be reached (the
workload does not exist, a rollout of another version is running, nothing to undo, API server
unreachable, forbidden); 2 bad input (a malformed workload, version, URL, ``--max-unavailable``,
a URL the sidecars' config would refuse). Errors are one message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from kidecar_core._rollout.commands import Checker, Commands, StartRequest
from kidecar_core._store.rollout import (
    WHEN_VALUES,
    RolloutError,
    RolloutTarget,
    RolloutUsageError,
    Workload,
    parse_max_unavailable,
)
from kidecar_core.errors import KidecarError, StartupError

EXIT_REFUSED = 1
EXIT_USAGE = 2
DEFAULT_MAX_UNAVAILABLE = "20%"
DEFAULT_RESULT_CONFIGMAP = "sidecar-result"
IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

WORKLOAD_HELP = "gameserverset/NAME, statefulset/NAME or deployment/NAME (also gss/, sts/, deploy/)"


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workload", metavar="WORKLOAD", help=WORKLOAD_HELP)
    parser.add_argument(
        "--plugin-file",
        action="append",
        default=[],
        metavar="PATH",
        help="a local plugin file the sidecars load (repeatable, as `kidecar run "
        "--plugin-file`): its kidecar_check_rollout answers for its part of the config",
    )
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "-n", "--namespace", help="the workload's namespace (default: the context's, else default)"
    )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rollout`` and its subcommands to the ``kidecar`` parser."""
    rollout = sub.add_parser(
        "rollout",
        help="roll a hot update across a workload (start, status, pause, resume, undo)",
        description="Declare the version a workload's pods should run; every sidecar gets there "
        "with its own verified hot update, at most --max-unavailable at a time. See "
        "docs/rollout.md.",
    )
    verbs = rollout.add_subparsers(dest="verb", metavar="VERB", required=True)
    start = verbs.add_parser("start", help="start rolling a version across the workload")
    _cluster_options(start)
    start.add_argument("--version", required=True, help="the version, e.g. v2 or v1.4.0")
    start.add_argument("--url", required=True, help="where the sidecars download the file")
    start.add_argument("--sha256", help="the file's SHA-256 (checked by every sidecar)")
    start.add_argument(
        "--max-unavailable",
        default=DEFAULT_MAX_UNAVAILABLE,
        metavar="N|P%",
        help="pods updating at once: a number or a percentage of replicas, rounded down, at "
        f"least 1 (default {DEFAULT_MAX_UNAVAILABLE.replace('%', '%%')})",
    )
    start.add_argument(
        "--partition",
        type=int,
        default=0,
        metavar="N",
        help="pods with an ordinal below N keep the previous version (Kruise's partition)",
    )
    start.add_argument(
        "--when",
        choices=WHEN_VALUES,
        default="idle",
        help="idle: a pod updates only while its GameServer is not Allocated (default); "
        "always: at once",
    )
    start.add_argument(
        "--config", help="the sidecar's config.yaml (default: read from the workload's ConfigMap)"
    )
    start.add_argument(
        "--result-configmap",
        default=DEFAULT_RESULT_CONFIGMAP,
        help="hot_update's persistence ConfigMap, where the version the fleet runs before its "
        f"first rollout is recorded (default {DEFAULT_RESULT_CONFIGMAP})",
    )
    for verb, text in (
        ("status", "show the pods' progress"),
        ("pause", "stop pods from starting an update (those in flight finish)"),
        ("resume", "go on after a pause (pods that failed try again)"),
    ):
        _cluster_options(verbs.add_parser(verb, help=text))
    undo = verbs.add_parser("undo", help="roll every pod back to the previous version")
    _cluster_options(undo)
    undo.add_argument("--when", choices=WHEN_VALUES, help="default: as the rollout undone")


def _kubeconfig(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """kubectl's choice: ``--kubeconfig``, ``$KUBECONFIG`` (its first file), ``~/.kube/config``;
    ``None`` (in-cluster) in a pod without any of them."""
    if args.kubeconfig:
        return str(args.kubeconfig)
    first = env.get("KUBECONFIG", "").split(os.pathsep)[0]
    if first:
        return first
    home = Path(env.get("HOME", "~")).expanduser() / ".kube" / "config"
    if home.is_file() or not env.get("KUBERNETES_SERVICE_HOST"):
        return str(home)
    return None


def _namespace(args: argparse.Namespace, kubeconfig: str | None) -> str:
    from kidecar_core._store.kube import kubeconfig_namespace

    if args.namespace:
        return str(args.namespace)
    if kubeconfig is None:
        path = Path(IN_CLUSTER_NAMESPACE)
        return path.read_text().strip() if path.is_file() else "default"
    return kubeconfig_namespace(kubeconfig, args.context) or "default"


def _start_request(args: argparse.Namespace, workload: Workload) -> StartRequest:
    if args.partition < 0:
        raise RolloutUsageError(f"--partition must be >= 0, got {args.partition}")
    sha256 = (args.sha256 or "").strip() or None
    target = RolloutTarget(args.version.strip(), args.url.strip(), sha256)
    if not target.version or not target.url:
        raise RolloutUsageError("--version and --url must not be empty")
    return StartRequest(
        workload, target, parse_max_unavailable(args.max_unavailable), args.partition, args.when
    )


def _read_config(path: str) -> tuple[str, str]:
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except OSError as e:
        raise RolloutUsageError(f"--config {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise RolloutUsageError(
            f"--config {path}: not UTF-8 text (byte {e.start}); a config.yaml is UTF-8"
        ) from None


async def _run(args: argparse.Namespace, env: Mapping[str, str], check: Checker) -> str:
    # Imported here: `kidecar run` in local mode never pays for the kubernetes client.
    from kidecar_core._rollout.cluster import Cluster
    from kidecar_core._store.kube import KubeStore

    kubeconfig = _kubeconfig(args, env)
    namespace = _namespace(args, kubeconfig)
    workload = Workload.parse(args.workload, namespace)
    request = _start_request(args, workload) if args.verb == "start" else None
    config_text = _read_config(args.config) if request is not None and args.config else None
    store = KubeStore.from_kubeconfig(kubeconfig, context=args.context)
    try:
        result_configmap = getattr(args, "result_configmap", DEFAULT_RESULT_CONFIGMAP)
        commands = Commands(Cluster(store, namespace), check, result_configmap)
        if request is not None:
            return await commands.start(request, config_text)
        if args.verb == "status":
            return await commands.status(workload)
        if args.verb == "pause":
            return await commands.pause(workload)
        if args.verb == "resume":
            return await commands.resume(workload)
        return await commands.undo(workload, args.when)
    finally:
        await store.close()


def main(
    args: argparse.Namespace, env: Mapping[str, str], check: Checker, out: TextIO, err: TextIO
) -> int:
    """Run ``kidecar rollout VERB``; the exit code."""
    try:
        text = asyncio.run(_run(args, env, check))
    except RolloutUsageError as e:
        print(f"kidecar rollout {args.verb}: error: {e}", file=err)
        return EXIT_USAGE
    except (RolloutError, StartupError, KidecarError) as e:
        print(f"kidecar rollout {args.verb}: error: {e}", file=err)
        return EXIT_REFUSED
    out.write(text if text.endswith("\n") else text + "\n")
    return 0
