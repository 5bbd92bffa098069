"""Reading YAML that people write by hand, with limits a hostile or broken file cannot pass.

PyYAML's ``safe_load`` with four changes, each raising :class:`~kidecar_core.errors.ConfigError`
(with the line) instead of doing something surprising:

* **duplicate keys are errors**: ``plugins:`` written twice would silently keep the last list
  (the same rule as ``kubectl``'s strict decoding); a ``<<`` merge key may still be overridden;
* **nesting is limited** to :data:`MAX_DEPTH` levels, aliases expanded (``[`` nested 10,000
  deep would exhaust the recursion limit);
* **aliases may not blow the document up** beyond :data:`MAX_ALIAS_EXPANSION` values (the
  "billion laughs" bomb) and may not refer to themselves;
* **YAML 1.2 numbers**: ``1e3`` is a number (PyYAML follows YAML 1.1, where a float needs a
  dot, and reads it as a string). A float keeps the text it was written as (:class:`YamlFloat`),
  so that a string field given ``1e3`` or ``1.50`` gets exactly that text.

:func:`read_yaml` also caps the file at :data:`MAX_FILE_BYTES` and refuses text that is not
UTF-8.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kidecar_core._base.files import read_regular_file
from kidecar_core.errors import ConfigError

MAX_FILE_BYTES = 1024 * 1024
"""A config file larger than this is refused (a ConfigMap holds at most 1 MiB anyway)."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings, aliases expanded."""
MAX_ALIAS_EXPANSION = 100_000
"""Most values a document may expand to through aliases."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_FLOAT_TAG = "tag:yaml.org,2002:float"
YAML12_FLOAT = re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$")
"""A YAML 1.2 float that YAML 1.1 reads as a string: an exponent without a dot (``1e3``)."""


class YamlFloat(float):
    """A float read from YAML that remembers how it was written (``1e3``, ``1.50``)."""

    text: str

    def __new__(cls, value: float, text: str) -> YamlFloat:
        self = super().__new__(cls, value)
        self.text = text
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (YamlFloat, (float(self), self.text))


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the rules of this module."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, tuple[int, int]] = {}
        """id(node) → (values it expands to, depth), for every node completely composed."""
        self._composed = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            node = super().compose_node(parent, index)
            assert node is not None
            if id(node) not in self._sizes:  # its node is still being composed: a cycle
                raise ComposerError(None, None, "an alias refers to a node containing it", mark)
            return node
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        assert node is not None
        self._measure(node)
        return node

    def _measure(self, node: Node) -> None:
        """Record how many values ``node`` expands to, and how deep; refuse a bomb."""
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        size, depth = 1, 1
        for child in children:
            child_size, child_depth = self._sizes[id(child)]
            size += child_size
            depth = max(depth, child_depth + 1)
        self._composed += 1
        if depth > MAX_DEPTH:
            raise ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels once aliases are expanded",
                node.start_mark,
            )  # fmt: skip
        if size > MAX_ALIAS_EXPANSION and size > self._composed:
            raise ComposerError(
                None, None,
                f"aliases expand this document to more than {MAX_ALIAS_EXPANSION} values",
                node.start_mark,
            )  # fmt: skip
        self._sizes[id(node)] = (size, depth)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable: the base class reports it
                if first is not None:
                    raise ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r} (first given on line "
                        f"{first.start_mark.line + 1})",
                        key_node.start_mark,
                    )  # fmt: skip
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_float(self, node: ScalarNode) -> float:
        value = super().construct_yaml_float(node)
        return YamlFloat(value, str(node.value))


StrictLoader.add_implicit_resolver(_FLOAT_TAG, YAML12_FLOAT, list("-+0123456789"))
StrictLoader.add_constructor(_FLOAT_TAG, StrictLoader.construct_yaml_float)


def parse_yaml(text: str, name: str = "<config>") -> Any:
    """The one document in ``text``; :class:`ConfigError` naming ``name`` and the line."""
    try:
        loader = StrictLoader(text)
    except yaml.YAMLError as e:  # a character YAML does not allow
        raise _config_error(e, name) from None
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise _config_error(e, name) from None
    finally:
        loader.dispose()


def parse_yaml_documents(text: str, name: str = "<input>") -> list[Any]:
    """Every document in ``text`` (``---`` separated), with the same rules."""
    try:
        loader = StrictLoader(text)
    except yaml.YAMLError as e:
        raise _config_error(e, name) from None
    docs: list[Any] = []
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]
            docs.append(loader.get_data())
    except yaml.YAMLError as e:
        raise _config_error(e, name) from None
    finally:
        loader.dispose()
    return docs


def read_yaml(path: str | Path) -> Any:
    """Read and parse a config file: a regular file (a symlink to one, as a mounted ConfigMap
    is), at most :data:`MAX_FILE_BYTES`, UTF-8. A FIFO or a device is refused without being
    read (reading a FIFO nobody writes to would block forever)."""
    try:
        data = read_regular_file(path, MAX_FILE_BYTES)
    except OSError as e:
        raise ConfigError.single("", f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError.single(
            "", f"{path} is larger than {MAX_FILE_BYTES // 1024} KiB: not a kidecar config"
        )
    return parse_yaml(decode_utf8(data, str(path)), str(path))


def decode_utf8(data: bytes, name: str) -> str:
    """``data`` as UTF-8 text; :class:`ConfigError` saying where it is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError.single(
            "",
            f"{name} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}, "
            f"line {line}): is it a binary file?",
        ) from None


def _config_error(error: yaml.YAMLError, name: str) -> ConfigError:
    mark = getattr(error, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    problem = getattr(error, "problem", None) or " ".join(str(error).split())
    return ConfigError.single("", f"{name} is not valid YAML{where}: {problem}")
