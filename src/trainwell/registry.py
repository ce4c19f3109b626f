"""Name -> builder registries for every pluggable family (tasks, optimizers, schedules, sinks...).

A registry is a small dict with a helpful error: an unknown name lists the valid ones and
the closest match, so that ``optim.name = "adamww"`` says ``did you mean 'adamw'?``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from trainwell.errors import ConfigError

T = TypeVar("T")


def suggest(name: str, valid: list[str]) -> str:
    """A short ``did you mean`` hint, or an empty string."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry(Generic[T]):
    """A named family of builders. ``key`` is the config path that selects from it."""

    def __init__(self, family: str, key: str) -> None:
        self.family = family
        self.key = key
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj, help)
            return obj

        return deco

    def add(self, name: str, obj: T, help: str = "") -> None:
        if name in self._items:
            raise ValueError(f"{self.family} {name!r} is registered twice")
        self._items[name] = obj
        self._help[name] = help

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(self.unknown(name))
        return self._items[name]

    def unknown(self, name: str) -> str:
        valid = sorted(self._items)
        return (
            f"{self.key}: unknown {self.family} {name!r}{suggest(name, valid)}; "
            f"valid: {', '.join(valid)}"
        )

    def help(self, name: str) -> str:
        return self._help[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
