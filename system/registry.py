"""Named implementations of one kind — rewards, environments, advantage estimators, data
generators — registered with a decorator, or named by a `package.module:attr` path so that
users plug in their own without editing this package (verl's `register_adv_est` pattern).

    ENVS = Registry("env", is_env_class, "a TextEnv subclass")
    @ENVS.register("twenty_four")
    class TwentyFourEnv(TextEnv): ...
    ENVS.get("twenty_four"), ENVS.get("my_pkg.envs:GuessEnv")
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable


class Registry:
    def __init__(self, kind: str, accepts: Callable[[Any], bool] = callable, expected: str = "a function"):
        self.kind, self.accepts, self.expected = kind, accepts, expected
        self._items: dict[str, Any] = {}

    def register(self, name: str) -> Callable:
        """Decorator. Re-registering the same object (a module imported twice) is allowed."""

        def add(obj):
            if not self.accepts(obj):
                raise TypeError(f"register {self.kind} '{name}': {obj!r} is not {self.expected}")
            taken = self._items.get(name)
            if taken is not None and _path(taken) != _path(obj):
                raise ValueError(f"{self.kind} name '{name}' is already taken by {_path(taken)}")
            self._items[name] = obj
            return obj

        return add

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str):
        """A registered name, or a `package.module:attr` path imported on demand."""
        if name in self._items:
            return self._items[name]
        if ":" not in name:
            match = difflib.get_close_matches(name, self._items, n=1, cutoff=0.5)
            hint = f" (did you mean '{match[0]}'?)" if match else ""
            raise ValueError(f"unknown {self.kind} '{name}'{hint}; registered: {self.names()}, "
                             f"or give a 'package.module:attr' path")
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"{self.kind} '{name}': cannot import module '{module_name}': {e}") from e
        if not hasattr(module, attr):
            raise ValueError(f"{self.kind} '{name}': module '{module_name}' has no attribute '{attr}'")
        obj = getattr(module, attr)
        if not self.accepts(obj):
            raise ValueError(f"{self.kind} '{name}' is a {type(obj).__name__}, not {self.expected}")
        return obj


def _path(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
