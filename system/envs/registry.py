"""Envs by name, or by `package.module:Class` path so a user's env needs no edit to this package.

    make_env("twenty_four", max_turns=3)
    make_env("my_pkg.my_env:GuessEnv", high=50)

Params are checked against the env's config dataclass before anything runs: a typo in a YAML
file fails at start-up with the closest valid name, not as a silent default hours later.
"""

from __future__ import annotations

import difflib
import importlib
import typing
from dataclasses import fields
from typing import Any, Callable, TypeVar

from system.envs.base import EnvConfig, TextEnv

E = TypeVar("E", bound=type[TextEnv])

_ENVS: dict[str, type[TextEnv]] = {}


def register_env(name: str) -> Callable[[E], E]:
    """Class decorator: `make_env(name)` builds this env once its module has been imported."""

    def add(cls: E) -> E:
        if not (isinstance(cls, type) and issubclass(cls, TextEnv)):
            raise TypeError(f"register_env('{name}'): {cls!r} is not a TextEnv subclass")
        taken = _ENVS.get(name)
        if taken is not None and _path(taken) != _path(cls):
            raise ValueError(f"env name '{name}' is already taken by {_path(taken)}")
        _ENVS[name] = cls
        return cls

    return add


def available_envs() -> list[str]:
    return sorted(_ENVS)


def resolve_env(name_or_path: str) -> type[TextEnv]:
    """The env class for a registered name or a `package.module:Class` path."""
    if ":" not in name_or_path:
        if name_or_path not in _ENVS:
            raise ValueError(
                f"unknown env '{name_or_path}'{_did_you_mean(name_or_path, _ENVS)}; registered: "
                f"{available_envs()}, or give a 'package.module:Class' path"
            )
        return _ENVS[name_or_path]
    module_name, _, attr = name_or_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"env '{name_or_path}': cannot import module '{module_name}': {e}") from e
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, TextEnv)):
        found = "nothing" if cls is None else repr(cls)
        raise ValueError(f"env '{name_or_path}': {module_name}.{attr} is {found}, not a TextEnv subclass")
    return cls


def make_env(name_or_path: str, **params: Any) -> TextEnv:
    """A new env with its config built from `params` (unknown names and wrong types raise ValueError)."""
    cls = resolve_env(name_or_path)
    return cls(_build_config(cls.config_cls, params, where=f"env '{name_or_path}'"))


def _build_config(config_cls: type[EnvConfig], params: dict[str, Any], where: str = "env") -> EnvConfig:
    names = [f.name for f in fields(config_cls)]
    hints = typing.get_type_hints(config_cls)
    for key, value in params.items():
        if key not in names:
            raise ValueError(f"{where}: unknown param '{key}'{_did_you_mean(key, names)}; valid: {names}")
        _check_type(key, value, hints[key], where)
    try:
        return config_cls(**params)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from e


def _check_type(key: str, value: Any, hint: Any, where: str) -> None:
    """Plain scalar fields only; YAML already gives ints, floats, bools and strings their types."""
    allowed = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}.get(hint)
    if allowed is None:
        return
    if isinstance(value, bool) and hint is not bool or not isinstance(value, allowed):
        raise ValueError(f"{where}: param '{key}' must be {hint.__name__}, got {value!r}")


def _did_you_mean(name: str, options) -> str:
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"
