"""Typed per-plugin state: :class:`StateKey` and :class:`PluginState` (``ctx.state``).

A plugin declares its keys once, at module level, with the type of their value::

    UPDATER = StateKey[HotUpdater]("updater")

    ctx.state[UPDATER] = HotUpdater(...)   # checked by mypy
    updater = ctx.state[UPDATER]           # typed HotUpdater

Keys are compared by identity, not by name, so two plugins (or two modules of one plugin) never
clash even when they pick the same name; the name is only for messages.  The pattern is pytest's
``StashKey`` and aiohttp's ``AppKey``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast, overload

T = TypeVar("T")
D = TypeVar("D")


class StateKey(Generic[T]):
    """A key of :class:`PluginState` whose values are of type ``T``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<StateKey {self.name}>"


class PluginState:
    """A plugin's own state, kept by the runtime across restarts of the plugin (not of the
    process).  A mapping from :class:`StateKey` to values of the key's type."""

    def __init__(self) -> None:
        self._values: dict[StateKey[Any], Any] = {}

    def __getitem__(self, key: StateKey[T]) -> T:
        """The value of ``key``; ``KeyError`` naming the key when it was never set."""
        try:
            return cast(T, self._values[key])
        except KeyError:
            raise KeyError(f"{key.name} is not in the plugin's state") from None

    def __setitem__(self, key: StateKey[T], value: T) -> None:
        self._values[key] = value

    def __delitem__(self, key: StateKey[T]) -> None:
        del self._values[key]

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    @overload
    def get(self, key: StateKey[T]) -> T | None: ...
    @overload
    def get(self, key: StateKey[T], default: D) -> T | D: ...
    def get(self, key: StateKey[T], default: object = None) -> object:
        """The value of ``key``, or ``default`` when it is not set."""
        return self._values.get(key, default)

    def setdefault(self, key: StateKey[T], default: T) -> T:
        """The value of ``key``; set to ``default`` first when it is not set."""
        return cast(T, self._values.setdefault(key, default))

    def setdefault_factory(self, key: StateKey[T], factory: Callable[[], T]) -> T:
        """The value of ``key``; set to ``factory()`` first when it is not set."""
        if key not in self._values:
            self._values[key] = factory()
        return cast(T, self._values[key])

    @overload
    def pop(self, key: StateKey[T]) -> T | None: ...
    @overload
    def pop(self, key: StateKey[T], default: D) -> T | D: ...
    def pop(self, key: StateKey[T], default: object = None) -> object:
        """Remove ``key`` and return its value (``default`` when it was not set)."""
        return self._values.pop(key, default)
