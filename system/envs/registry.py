"""Envs by name, or by `package.module:Class` path so a user's env needs no edit to this package.

    make_env("twenty_four", max_turns=3)
    make_env("my_pkg.my_env:GuessEnv", high=50)

An env class is any class with `reset` and `step` (system/envs/protocol.py). Params are checked
before anything runs, against the config dataclass of a `TextEnv` or the constructor's keyword
parameters of any other class: a typo in a YAML file fails at start-up with the closest valid
name, not as a silent default hours later.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import typing
from dataclasses import fields
from typing import Any

from system.envs.base import EnvConfig, TextEnv
from system.envs.protocol import is_env
from system.registry import Registry

ENVS = Registry("env", lambda obj: isinstance(obj, type) and is_env(obj), "an env class (with reset, step)")
register_env = ENVS.register  # class decorator: make_env(name) builds it once its module is imported
available_envs = ENVS.names
# Envs of other libraries, by `prefix:<id>`: the adapter module's `env_class(id)` (imported on first use).
LIBRARY_ENVS = {"textarena": "system.envs.textarena", "skyrl_gym": "system.envs.skyrl_gym"}


def resolve_env(name: str) -> type:
    """The env class for a registered name, a `package.module:Class` path, or a library's
    `textarena:<id>` / `skyrl_gym:<id>` (docs/tasks-and-environments.md)."""
    prefix, _, rest = name.partition(":")
    if prefix in LIBRARY_ENVS and rest:
        return importlib.import_module(LIBRARY_ENVS[prefix]).env_class(rest)
    return ENVS.get(name)


def make_env(name_or_path: str, **params: Any) -> Any:
    """A new env: a TextEnv with its config built from `params`, any other class called with them
    (unknown names and wrong types raise ValueError)."""
    cls, where = resolve_env(name_or_path), f"env '{name_or_path}'"
    if issubclass(cls, TextEnv):
        return cls(_build_config(cls.config_cls, params, where))
    _check_call(cls, params, where)
    return cls(**params)


def _check_call(cls: type, params: dict[str, Any], where: str) -> None:
    """`params` bind to the constructor's keywords, each of its annotated scalar type."""
    signature = inspect.signature(cls)
    names = [name for name, p in signature.parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    for key in params:
        if key not in names and not takes_any:
            raise ValueError(f"{where}: unknown param '{key}'{_did_you_mean(key, names)}; valid: {names}")
    try:
        signature.bind(**params)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from e
    hints = typing.get_type_hints(cls.__init__)
    for key, value in params.items():
        _check_type(key, value, hints.get(key), where)


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
