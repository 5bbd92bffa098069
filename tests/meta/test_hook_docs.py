"""Every hook is documented to one template and exercised by a test named for it (datasette's
meta-tests: a hook nobody documented or tested is a hook nobody can rely on)."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kidecar_core import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS: dict[str, Callable[..., Any]] = {
    name: fn
    for name, fn in vars(hookspecs).items()
    if name.startswith("kidecar_") and callable(fn) and hasattr(fn, "kidecar_spec")
}


def normalized(text: str) -> str:
    return " ".join(text.split())


def signature(fn: Callable[..., Any]) -> str:
    """``def name(arg: Type, ...) -> Return: ...`` as written in the hookspecs module."""
    sig = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {fn.__name__}({params}) -> {sig.return_annotation}: ..."


def test_the_hooks_are_found() -> None:
    assert len(HOOKS) >= 12
    assert {"kidecar_persist", "kidecar_start", "kidecar_shutdown"} <= set(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hookspec_docstring_follows_the_template(name: str) -> None:
    fn = HOOKS[name]
    doc = inspect.getdoc(fn) or ""
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"{name}: no :param {param}:"
    assert ":returns:" in doc, f"{name}: does not say what it returns"
    assert re.search(r"\bFires\b", doc), f"{name}: does not say when it fires"
    assert "If it raises" in doc, f"{name}: does not say what happens when it raises"
    assert "Use in override files:" in doc, f"{name}: no 'Use in override files' note"
    assert "Example::" in doc, f"{name}: no example"
    assert f"def {name}(" in doc.split("Example::", 1)[1], f"{name}: the example is not of it"
    opts = fn.kidecar_spec  # type: ignore[attr-defined]
    has_first = normalized(hookspecs.FIRSTRESULT) in normalized(doc)
    assert has_first == bool(opts.get("firstresult")), f"{name}: the firstresult sentence"
    returns_awaitable = "Awaitable" in str(inspect.signature(fn).return_annotation)
    has_wrappers = normalized(hookspecs.WRAPPERS) in normalized(doc)
    assert has_wrappers == returns_awaitable, f"{name}: the wrapper sentence"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_in_the_reference_with_its_exact_signature(name: str) -> None:
    reference = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    assert f"### `{name}`" in reference
    assert signature(HOOKS[name]) in reference, signature(HOOKS[name])


def collected_test_names() -> list[str]:
    """Names of every test function of the project's and contrib's test suites."""
    names = []
    files = [*(ROOT / "tests").rglob("test_*.py"), *(ROOT / "contrib").rglob("test_*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if is_function and node.name.startswith("test_"):
                names.append(node.name)
    return names


def hooks_named_in(test_name: str) -> set[str]:
    """Hooks a test's name names (the longest match: ``kidecar_tick_interval`` is not a test of
    ``kidecar_tick``)."""
    pattern = "|".join(sorted(HOOKS, key=len, reverse=True))
    return set(re.findall(pattern, test_name))


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_exercised_by_a_test_named_for_it(name: str) -> None:
    tests = [t for t in collected_test_names() if name in hooks_named_in(t)]
    assert tests, f"no test whose name contains {name}"
