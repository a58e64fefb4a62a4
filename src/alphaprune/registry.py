"""Named things of one kind (models, data sources, branch kinds, schedules, losses): one small
registry, so that every "unknown name" error reads the same and lists the known names."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TypeVar

from alphaprune.errors import UnknownNameError

T = TypeVar("T")


class Registry(dict[str, T]):
    """A dict of name -> thing. `register(name)` decorates a thing in (never overwriting one:
    two things under one name would make a config's meaning depend on import order); `lookup`
    finds one, or raises `error` naming the known ones (and the closest, for a typo)."""

    def __init__(
        self, kind: str, *, hint: str = "", error: type[UnknownNameError] = UnknownNameError
    ):
        super().__init__()
        self.kind, self.hint, self.error = kind, hint, error

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(thing: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = thing
            return thing

        return decorator

    def lookup(self, name: str) -> T:
        try:
            return self[name]
        except KeyError:
            raise self.error(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
        """The message for an unknown `name`."""
        names = sorted(self)
        message = f"unknown {self.kind} {name!r}; known: {', '.join(names)}{self.hint}"
        close = difflib.get_close_matches(str(name), names, n=1)
        return message + (f" (did you mean {close[0]!r}?)" if close else "")
