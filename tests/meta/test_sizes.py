"""Size limits, checked on the syntax tree: no function over 60 lines and no class over 250 lines
in ``kidecar_core`` and ``kidecar_plugins`` (a longer one is two things that want names).

Lines are counted from the ``def``/``class`` line (decorators excluded) to the last line of the
body, docstrings and comments included.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kidecar_core", "kidecar_plugins")
MAX_FUNCTION = 60
MAX_CLASS = 250

ALLOWED: dict[str, str] = {
    # Code another branch is rewriting right now; each entry names the branch, and the lead
    # empties this list when they are merged.  Nothing else may be added here.
}


def definitions() -> Iterator[tuple[str, str, int, int]]:
    """(``path::Qualified.name``, kind, lines, limit) for every function and class."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            yield from _walk(tree, str(path.relative_to(ROOT)), "")


def _walk(node: ast.AST, path: str, prefix: str) -> Iterator[tuple[str, str, int, int]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{child.name}"
            lines = (child.end_lineno or child.lineno) - child.lineno + 1
            is_class = isinstance(child, ast.ClassDef)
            kind, limit = ("class", MAX_CLASS) if is_class else ("function", MAX_FUNCTION)
            yield f"{path}::{name}", kind, lines, limit
            yield from _walk(child, path, f"{name}.")
        else:
            yield from _walk(child, path, prefix)


DEFINITIONS = list(definitions())


def test_definitions_are_found() -> None:
    names = {name for name, _, _, _ in DEFINITIONS}
    assert "kidecar_core/_runtime/runtime.py::Runtime.run" in names
    assert len(DEFINITIONS) > 300


def test_no_function_or_class_is_too_long() -> None:
    too_long = [
        f"{name}: {kind} of {lines} lines (limit {limit})"
        for name, kind, lines, limit in DEFINITIONS
        if lines > limit and name not in ALLOWED
    ]
    assert not too_long, "\n".join(too_long)


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_every_allowed_exception_is_still_needed(name: str) -> None:
    over = [n for n, _, lines, limit in DEFINITIONS if n == name and lines > limit]
    assert over, f"{name} is within the limits now: remove it from ALLOWED"
