"""``kidecar inject``: the command, from parsed arguments to the injected YAML on ``out``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TextIO

from kidecar_core._config.catalog import embedded_config, load_parsed
from kidecar_core._config.strict_yaml import read_yaml
from kidecar_core._inject import inject, sidecarset
from kidecar_core._plugins.manager import Plugins

EXIT_CONFIG = 2


def inject_command(
    args: argparse.Namespace, env: Mapping[str, str], stdin: TextIO, out: TextIO, err: TextIO
) -> int:
    """Print the workload of ``args.filename`` with the sidecar added (or, with
    ``--sidecarset``, a SidecarSet holding it); 2 on a user mistake."""
    if (args.filename is None) == (args.sidecarset is None):
        print("kidecar inject: give either -f WORKLOAD or --sidecarset NAME", file=err)
        return EXIT_CONFIG
    if args.sidecarset is None and (args.selector or args.namespace is not None):
        print("kidecar inject: --selector and --namespace go with --sidecarset", file=err)
        return EXIT_CONFIG
    if args.sidecarset is not None and args.container:
        print("kidecar inject: --container goes with -f (a SidecarSet does not change the "
              "game's container; the notes say what its pod template needs)", file=err)  # fmt: skip
        return EXIT_CONFIG
    plugins = Plugins.load(env, args.plugin_file)
    try:
        sidecar, config_map = _sidecar(args, env, plugins, err)
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
    if args.sidecarset is not None:
        return _print_sidecarset(args, sidecar, options, out, err)
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


def _print_sidecarset(
    args: argparse.Namespace,
    sidecar: inject.Sidecar,
    options: inject.InjectOptions,
    out: TextIO,
    err: TextIO,
) -> int:
    try:
        selector = sidecarset.parse_selector(args.selector)
        document, notes = sidecarset.sidecarset(
            args.sidecarset, selector, sidecar, options, namespace=args.namespace
        )
    except inject.InjectError as e:
        print(f"kidecar inject: {e}", file=err)
        return EXIT_CONFIG
    for note in notes:
        print(f"kidecar inject: note: {note}", file=err)
    out.write(inject.dump_documents([document]))
    return 0


def _sidecar(
    args: argparse.Namespace, env: Mapping[str, str], plugins: Plugins, err: TextIO
) -> tuple[inject.Sidecar, str | None]:
    """The sidecar the config asks for, and the ConfigMap that holds the config."""
    raw = read_yaml(args.config)
    config_map = args.config_map
    embedded = embedded_config(raw)
    if embedded is not None:
        raw, config_map = embedded[0], config_map or embedded[1]
    loaded = load_parsed(raw, plugins, env, lenient=True)
    for warning in loaded.warnings:
        print(f"kidecar inject: warning: {warning}", file=err)
    plugins.activate(loaded.plugins)
    return inject.sidecar_from_config(loaded, plugins), config_map
