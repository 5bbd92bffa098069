"""The hook reference: every hookspec, grouped by the section comments of the hookspecs module."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pluggy

from kidecar_core import hookspecs
from kidecar_core._docs.markdown import GENERATED, cell, rst_to_markdown
from kidecar_core._plugins.manager import SERVICE_HOOKS

_SECTION = re.compile(r"^# -- (.+?) -*$")


@attrs.frozen
class HookDoc:
    """One hookspec as the reference shows it."""

    name: str
    section: str
    signature: str
    opts: Mapping[str, Any]
    doc: str

    @property
    def addressed(self) -> bool:
        return self.name in SERVICE_HOOKS


def hook_docs() -> list[HookDoc]:
    """Every hookspec of :mod:`kidecar_core.hookspecs`, in source order, with its section."""
    source = Path(inspect.getfile(hookspecs)).read_text(encoding="utf-8")
    sections: dict[int, str] = {}
    for lineno, line in enumerate(source.splitlines(), start=1):
        m = _SECTION.match(line)
        if m:
            sections[lineno] = m.group(1)
    pm = pluggy.PluginManager(hookspecs.NAME)
    pm.add_hookspecs(hookspecs)
    docs: list[HookDoc] = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("kidecar_"):
            continue
        section = next((s for ln, s in reversed(sections.items()) if ln < node.lineno), "")
        returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
        spec = getattr(pm.hook, node.name).spec
        assert spec is not None
        docs.append(
            HookDoc(
                node.name,
                section,
                f"def {node.name}({ast.unparse(node.args)}){returns}: ...",
                dict(spec.opts),
                inspect.getdoc(spec.function) or "",
            )
        )
    return docs


def flags(opts: Mapping[str, Any]) -> list[str]:
    """The hookspec options a plugin author must know about, in a fixed order."""
    return [flag for flag in ("firstresult", "historic") if opts.get(flag)]


def render_hook_reference() -> str:
    """The hook reference: the hookspecs module's docstring, then every hook by section."""
    hooks = hook_docs()
    out = [
        "# Hook reference",
        "",
        GENERATED,
        "",
        rst_to_markdown(inspect.getdoc(hookspecs) or ""),
        "",
        "| hook | called | flags | summary |",
        "|---|---|---|---|",
    ]
    for h in hooks:
        called = "addressed" if h.addressed else "broadcast"
        flag_text = ", ".join(flags(h.opts)) or "—"
        summary = cell(rst_to_markdown(h.doc.split("\n\n")[0]))
        out.append(f"| [`{h.name}`](#{h.name}) | {called} | {flag_text} | {summary} |")
    out.append("")
    current = None
    for h in hooks:
        if h.section != current:
            current = h.section
            out += [f"## {current[:1].upper()}{current[1:]}", ""]
        decorator = "@hookspec"
        if flags(h.opts):
            decorator += "(" + ", ".join(f"{f}=True" for f in flags(h.opts)) + ")"
        called = (
            "Addressed to one configured plugin (`ctx.name`/`name` says which)."
            if h.addressed
            else "Broadcast to every registered plugin."
        )
        out += [f"### `{h.name}`", "", "```python", decorator, h.signature, "```", ""]
        out += [called, "", rst_to_markdown(h.doc), ""]
    return "\n".join(out).rstrip() + "\n"
