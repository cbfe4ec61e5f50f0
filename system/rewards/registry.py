"""Reward functions by name: the shipped ones register themselves, users point at their own.

Every reward has one signature, `fn(completions, **columns) -> list[float | None]`, so the
config can name any of them (`reward.functions: {accuracy: 1.0, my_pkg.rewards:brevity: 0.1}`)
and the driver never needs to know what a reward reads.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Optional

RewardFn = Callable[..., list[Optional[float]]]

_REGISTRY: dict[str, RewardFn] = {}


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator: make `fn` available to configs as `name`."""

    def decorate(fn: RewardFn) -> RewardFn:
        taken = _REGISTRY.get(name)
        if taken is not None and _path(taken) != _path(fn):  # the same function again: a re-import
            raise ValueError(f"reward {name!r} is already registered by {_path(taken)}")
        _REGISTRY[name] = fn
        return fn

    return decorate


def available_rewards() -> list[str]:
    return sorted(_REGISTRY)


def get_reward(name: str) -> RewardFn:
    """A registered reward, or `package.module:function` imported on demand."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        return _import(name)
    closest = difflib.get_close_matches(name, _REGISTRY, n=1, cutoff=0.0)
    hint = f" (did you mean {closest[0]!r}?)" if closest else ""
    raise ValueError(
        f"unknown reward {name!r}{hint}. Registered: {', '.join(available_rewards())}; "
        "or give a 'package.module:function' path"
    )


def _path(fn: RewardFn) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def _import(path: str) -> RewardFn:
    module_name, _, attr = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except ImportError as e:
        raise ValueError(f"reward {path!r}: cannot import module {module_name!r} ({e})") from e
    except AttributeError:
        raise ValueError(f"reward {path!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(fn):
        raise ValueError(f"reward {path!r} is a {type(fn).__name__}, not a function")
    return fn
