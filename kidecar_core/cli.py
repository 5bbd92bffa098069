"""The ``kidecar`` command line: argument parsing only; the commands live with their stage
(:mod:`kidecar_core._runtime.bootstrap`, :mod:`kidecar_core._inject.command`,
:mod:`kidecar_core._rollout.command`).

Exit codes: 0 success (and graceful stop), 1 cannot start (``kidecar rollout``: refused by the
cluster's state), 2 invalid configuration or usage. User mistakes print a message, never a
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from kidecar_core._rollout import command as rollout_command
from kidecar_core._runtime.bootstrap import LOG_LEVELS, positive_seconds
from kidecar_core._version import __version__
from kidecar_core.errors import ConfigError, KidecarError

EXIT_STARTUP = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kidecar",
        description="A pluggable sidecar for OpenKruiseGame game-server pods.",
    )
    parser.add_argument("--version", action="version", version=f"kidecar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(sub.add_parser("run", help="run the sidecar"))
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path", nargs="?", help="config file (default: as for run)")
    _add_plugin_file(check)
    listing = sub.add_parser("plugins", help="list installed plugins and the hooks they implement")
    _add_plugin_file(listing)
    _add_inject(
        sub.add_parser(
            "inject",
            help="print a workload with the sidecar added (like linkerd inject), or a SidecarSet",
            description="Print the workload (Pod, Deployment, StatefulSet, ReplicaSet, DaemonSet, "
            "Job, CronJob, GameServerSet; multi-document YAML) with the kidecar sidecar added, as "
            "the config and its plugins need it. Idempotent: injecting twice is the same as once. "
            "Comments are dropped, except those that open the file. "
            "Usage: kidecar inject -f gss.yaml --config config.yaml | kubectl apply -f -. "
            "With --sidecarset NAME --selector K=V instead of -f: print an OpenKruise SidecarSet "
            "that adds the same sidecar to every new pod with those labels.",
        )
    )
    rollout_command.add_parser(sub)
    demo = sub.add_parser(
        "demo", help="watch kidecar probe a demo game and hot-update it (local, no cluster)"
    )
    demo.add_argument(
        "--pace", type=float, default=1.0, help="seconds to pause between steps (default 1)"
    )
    return parser


def _add_plugin_file(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument("--plugin-file", action="append", default=[], metavar="PATH", help=help)


def _add_run(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--config", help="config file (default: $KIDECAR_CONFIG, else /opt/sidecar/config.yaml)"
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
    _add_plugin_file(
        run,
        "load hook implementations from a local Python file (repeatable), like pytest's "
        "conftest.py; also $KIDECAR_PLUGIN_FILES (comma-separated)",
    )


def _add_inject(inject: argparse.ArgumentParser) -> None:
    inject.add_argument("-f", "--filename", metavar="WORKLOAD", help="YAML file; - for stdin")
    inject.add_argument(
        "--sidecarset",
        metavar="NAME",
        help="print a SidecarSet (apps.kruise.io/v1alpha1) named NAME instead of a workload",
    )
    inject.add_argument(
        "--selector",
        action="append",
        default=[],
        metavar="K=V",
        help="with --sidecarset: the pod labels it selects (repeatable, all must match)",
    )
    inject.add_argument(
        "--namespace",
        metavar="NS",
        help="with --sidecarset: only pods of this namespace (default: every namespace)",
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
        "--container",
        metavar="NAME",
        help="with -f: the game's main container (default: the first)",
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
    _add_plugin_file(inject)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    env = dict(os.environ)
    try:
        return _dispatch(parser, args, env)
    except ConfigError as e:
        print_config_error(e, sys.stderr)
        return EXIT_CONFIG
    except KidecarError as e:
        print(f"kidecar: error: {e}", file=sys.stderr)
        return EXIT_STARTUP
    except KeyboardInterrupt:
        return 130


def _dispatch(
    parser: argparse.ArgumentParser, args: argparse.Namespace, env: dict[str, str]
) -> int:
    from kidecar_core._runtime import bootstrap

    if args.command == "run":
        return bootstrap.run(args, env)
    if args.command == "check-config":
        return bootstrap.check_config(args, env, sys.stdout)
    if args.command == "plugins":
        return bootstrap.list_plugins(env, sys.stdout, args.plugin_file)
    if args.command == "inject":
        from kidecar_core._inject.command import inject_command

        return inject_command(args, env, sys.stdin, sys.stdout, sys.stderr)
    if args.command == "rollout":
        from kidecar_core._rollout.check import sidecar_checker

        check = sidecar_checker(env, args.plugin_file)
        return rollout_command.main(args, env, check, sys.stdout, sys.stderr)
    if args.command == "demo":
        from kidecar_core._demo import runner

        return runner.main(pace=args.pace)
    parser.print_help()
    return EXIT_CONFIG


def print_config_error(error: ConfigError, out: TextIO) -> None:
    count = len(error.problems)
    print(f"kidecar: invalid configuration ({count} problem{'s' * (count != 1)}):", file=out)
    for p in error.problems:
        print(f"  {p}", file=out)
