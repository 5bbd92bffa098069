"""Reference documentation generated from the code: config field docs and hookspec docstrings.

``python -m kidecar_core._docs`` writes ``docs/configuration.md`` (the top-level config, each
installed service plugin's ``config`` and each storage type, from their ``field(doc=...)``) and
``docs/hooks.md`` (every hookspec, grouped by the section comments of
:mod:`kidecar_core.hookspecs`).  ``--check`` only compares; a test keeps the committed files equal
to a fresh render.  The output is deterministic: plugins and storage types sorted by name, fields
in declaration order.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Sequence
from pathlib import Path

from kidecar_core._docs.config_reference import DISTRIBUTION, render_class, render_config_reference
from kidecar_core._docs.hook_reference import HookDoc, hook_docs, render_hook_reference
from kidecar_core._docs.markdown import REGENERATE, rst_to_markdown
from kidecar_core._plugins.manager import Plugins

__all__ = [
    "DISTRIBUTION",
    "REGENERATE",
    "HookDoc",
    "hook_docs",
    "main",
    "render_all",
    "render_class",
    "render_config_reference",
    "render_hook_reference",
    "rst_to_markdown",
]


def render_all(
    plugins: Plugins | None = None, distributions: Collection[str] | None = (DISTRIBUTION,)
) -> dict[str, str]:
    """File name (under ``docs/``) → content, for the plugins installed in this environment.

    By default only kidecar's own plugins are documented, so that the committed reference does
    not depend on which third-party plugins happen to be installed.
    """
    if plugins is None:
        plugins = Plugins({})  # the operator's allow/deny lists must not change the reference
        plugins.load_entry_points()
    return {
        "configuration.md": render_config_reference(plugins, distributions),
        "hooks.md": render_hook_reference(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE, description="Write the configuration and hook references."
    )
    parser.add_argument("--out", default="docs", help="directory (default: docs)")
    parser.add_argument(
        "--check", action="store_true", help="only compare; exit 1 when a file is out of date"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--distribution",
        action="append",
        metavar="NAME",
        help=f"document the plugins of this distribution (repeatable; default: {DISTRIBUTION})",
    )
    which.add_argument("--all", action="store_true", help="document every installed plugin")
    args = parser.parse_args(argv)
    distributions = None if args.all else (args.distribution or [DISTRIBUTION])
    out = Path(args.out)
    stale = []
    for name, text in render_all(distributions=distributions).items():
        path = out / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(str(path))
        if not args.check:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run `{REGENERATE}`", file=sys.stderr)
        return 1
    for path_name in stale:
        print(f"wrote {path_name}")
    return 0
