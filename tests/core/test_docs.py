"""The generated references stay in sync with the code, and the code has the docs they need.

* ``docs/configuration.md`` and ``docs/hooks.md`` equal a fresh render;
* (every hookspec docstring follows the template: ``tests/meta/test_hook_docs.py``);
* every config field of the core and of every installed plugin and storage type is documented;
* every hookspec is implemented by some plugin in the repository (no dead hooks).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

import attrs
import pytest

from kidecar_core import _docs as docs
from kidecar_core import field
from kidecar_core._config.loader import KidecarConfig
from kidecar_core._config.schema import config_key, field_doc, non_negative, positive
from kidecar_core._docs.config_reference import walk
from kidecar_core._docs.hook_reference import flags as hook_flags
from kidecar_core._plugins.manager import Plugins

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
IMPLEMENTATION_DIRS = [ROOT / "kidecar_plugins", ROOT / "tests" / "testplugin", ROOT / "contrib"]


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    loaded = Plugins({})
    loaded.load_entry_points()
    return loaded


@pytest.mark.parametrize("name", ["configuration.md", "hooks.md"])
def test_committed_reference_equals_a_fresh_render(name: str, plugins: Plugins) -> None:
    fresh = docs.render_all(plugins)[name]
    committed = (DOCS / name).read_text(encoding="utf-8") if (DOCS / name).exists() else ""
    assert committed == fresh, (
        f"docs/{name} is out of date: regenerate it with `{docs.REGENERATE}` and commit it"
    )


def test_the_reference_covers_every_builtin_plugin_and_storage_type(plugins: Plugins) -> None:
    text = docs.render_config_reference(plugins)
    for name, plugin in plugins.installed.items():
        if plugin.distribution == docs.DISTRIBUTION and plugin.is_service:
            assert f"### `{name}`" in text
    for type_name, st in plugins.storage_types().types.items():
        if plugins.installed[st.plugin].distribution == docs.DISTRIBUTION:
            assert f"### `{type_name}`" in text


def test_check_mode_reports_stale_files_and_writing_fixes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert docs.main(["--check", "--out", str(tmp_path)]) == 1
    assert docs.REGENERATE in capsys.readouterr().err
    assert docs.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configuration.md", "hooks.md"]
    assert docs.main(["--check", "--out", str(tmp_path)]) == 0


# -- hookspec docstrings ------------------------------------------------------------------------

HOOKS = docs.hook_docs()


def test_hooks_are_found_with_their_sections() -> None:
    names = [h.name for h in HOOKS]
    assert "kidecar_persist" in names and "kidecar_tick" in names
    assert all(h.section for h in HOOKS), [h.name for h in HOOKS if not h.section]
    flags = {h.name: hook_flags(h.opts) for h in HOOKS}
    assert flags["kidecar_config_schema"] == ["firstresult"]
    assert flags["kidecar_persist"] == []


def _implementations() -> Iterator[str]:
    for directory in IMPLEMENTATION_DIRS:
        for path in directory.rglob("*.py"):
            if "build" in path.relative_to(directory).parts:
                continue
            yield path.read_text(encoding="utf-8")


def test_every_hookspec_is_implemented_by_a_plugin_in_the_repository() -> None:
    sources = "\n".join(_implementations())
    dead = [h.name for h in HOOKS if not re.search(rf"^\s*def {h.name}\(", sources, re.M)]
    assert not dead, f"hookspecs no plugin in the repository implements: {dead}"


# -- config field docs --------------------------------------------------------------------------


def _config_classes(plugins: Plugins) -> Iterator[tuple[str, type]]:
    for section in walk(KidecarConfig, ""):
        yield f"top level {section.path}", section.cls
    for name in sorted(plugins.service_plugins()):
        schema = plugins.config_schema(name)
        if schema is not None:
            for section in walk(schema, ""):
                yield f"plugin {name} {section.path}", section.cls
    for type_name, st in sorted(plugins.storage_types().types.items()):
        for section in walk(st.config_class, st.key):
            yield f"storage type {type_name} {section.path}", section.cls


def test_every_config_field_is_documented(plugins: Plugins) -> None:
    missing = [
        f"{where}: {config_key(a)}"
        for where, cls in _config_classes(plugins)
        for a in attrs.fields(cls)
        if not field_doc(a).strip()
    ]
    assert not missing, f"config fields without field(doc=...): {missing}"
    undocumented = [where for where, cls in _config_classes(plugins) if not cls.__doc__]
    assert not undocumented, f"config classes without a docstring: {undocumented}"


# -- the renderer -------------------------------------------------------------------------------


@attrs.frozen
class _Item:
    """An item."""

    weight: int = field(doc="How heavy.", validator=positive)


@attrs.frozen
class _Sample:
    """A sample config."""

    mode: Literal["a", "b"] = field(doc="The mode.")
    items: tuple[_Item, ...] = field(
        key="itemList", aliases=("items_old",), factory=tuple, doc="The ``items``."
    )
    by_name: Mapping[str, _Item] = field(key="byName", factory=dict, doc="Items | by name.")
    limit: float | None = field(default=None, validator=non_negative, doc="A limit.")
    tags: tuple[str, ...] = field(factory=lambda: ("x", "y"), doc="Tags.")


def test_render_class_tables_nested_classes_aliases_defaults_and_constraints() -> None:
    text = "\n".join(docs.render_class(_Sample, "", "###"))
    assert "| `mode` | one of `a`, `b` | **required** | The mode. |" in text
    assert "| `itemList` (also `items_old`, `items`) | list of object | `[]` | The `items`. |" in (
        text
    )
    assert "| `byName` | map of string to object | `{}` | Items \\| by name. |" in text
    assert "| `limit` | number | unset | A limit. Must be ≥ 0. |" in text
    assert '| `tags` | list of string | `["x", "y"]` | Tags. |' in text
    assert "#### `itemList[]`" in text and "#### `byName.<name>`" in text
    assert text.count("| `weight` | integer | **required** | How heavy. Must be > 0. |") == 2


def test_rst_to_markdown() -> None:
    rst = (
        "See :class:`~kidecar_core.Write` and :func:`kidecar_core.field`.\n"
        "Use ``x``::\n\n    code()\n    more()\n\nAfter.\n\n"
        ":param register: first\n    second line\n"
    )
    assert docs.rst_to_markdown(rst) == (
        "See `Write` and `kidecar_core.field`.\nUse `x`:\n\n"
        "```python\ncode()\nmore()\n```\n\nAfter.\n\n- `register`: first second line"
    )
