"""Two spellings of the Go version's configs the loader accepts: ``plugins`` as a mapping (its
format until October 2024) and ``bootOrder`` one level too deep, inside a plugin's ``config``."""

from __future__ import annotations

from pathlib import Path

import pytest

from kidecar_core._config.catalog import load_file
from kidecar_core._config.loader import LoadedConfig
from kidecar_core._plugins.manager import Plugins
from kidecar_core.errors import ConfigError

PROBE = "{endpoints: [{url: 'http://127.0.0.1:1/'}]}"


def load_text(tmp_path: Path, text: str) -> LoadedConfig:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_file(str(path), Plugins.load({}), {}, lenient=False)


def test_plugins_as_a_mapping_load_in_file_order_named_by_their_keys(tmp_path: Path) -> None:
    text = f"""\
plugins:
  http_probe:
    config: {PROBE}
    bootOrder: 1
  tcp_probe:
    name: tcp_probe
    config: {{endpoints: [{{port: 7777}}]}}
"""
    loaded = load_text(tmp_path, text)
    assert [(p.name, p.index, p.bootorder) for p in loaded.plugins] == [
        ("http_probe", 0, 1),
        ("tcp_probe", 1, 0),
    ]
    assert [w for w in loaded.warnings if "Go version's old format" in w] == [
        "plugins: a mapping of name to plugin is the Go version's old format; it still loads "
        "(as plugins[0], plugins[1], ... in file order), write a list instead"
    ]


def test_mapping_entries_are_checked_like_list_entries(tmp_path: Path) -> None:
    text = f"""\
plugins:
  http_probe: {{name: hot_update, config: {PROBE}}}
  tcp_probe: nonsense
"""
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    problems = {p.path: p.message for p in caught.value.problems}
    assert problems["plugins.http_probe.name"] == "'hot_update' differs from its key 'http_probe'"
    assert problems["plugins[1]"] == "expected a mapping, got a string"


def probe_entry(config_boot_order: int, entry_boot_order: int | None = None) -> str:
    entry = f"\n    bootorder: {entry_boot_order}" if entry_boot_order is not None else ""
    return f"""\
  - name: http_probe{entry}
    config:
      endpoints: [{{url: 'http://127.0.0.1:1/'}}]
      bootOrder: {config_boot_order}
"""


def test_boot_order_inside_config_is_moved_up_with_a_warning(tmp_path: Path) -> None:
    tcp = "  - {name: tcp_probe, config: {endpoints: [{port: 7777}]}}\n"
    loaded = load_text(tmp_path, "plugins:\n" + tcp + probe_entry(2))
    assert [(p.name, p.bootorder) for p in loaded.boot_sequence()] == [
        ("tcp_probe", 0),
        ("http_probe", 2),
    ]
    assert (
        "plugins[1].config.bootOrder: the boot order belongs one level up (plugins[1].bootOrder); "
        "used as such (the Go version ignored it there)"
    ) in loaded.warnings


def test_boot_order_in_both_places_must_agree(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, "plugins:\n" + probe_entry(2, entry_boot_order=1))
    assert [str(p) for p in caught.value.problems] == [
        "plugins[0].config.bootOrder: belongs one level up, where plugins[0].bootorder is set too"
    ]
    assert load_text(tmp_path, "plugins:\n" + probe_entry(2, 2)).plugins[0].bootorder == 2
