"""Reward functions by name: the shipped ones register themselves, users point at their own.

Every reward has one signature, `fn(completions, **columns) -> list[float | None]`, so the
config can name any of them (`reward.functions: {accuracy: 1.0, my_pkg.rewards:brevity: 0.1}`)
and the driver never needs to know what a reward reads.

A reward that says whether an answer is right (not its format or length) registers with
`correctness=True`: a score of 1.0 there means "solved", which eval accuracy, pass@k and
`reward/accuracy` count. A user's reward does the same in its own module:

    @register_reward("exact_match", correctness=True)
    def exact_match(completions, answer, **_): ...
"""

from __future__ import annotations

from typing import Callable

from system.registry import Registry

REWARDS = Registry("reward", callable, "a function")
available_rewards = REWARDS.names


def get_reward(name: str) -> Callable:
    """A registered reward, or a `package.module:function` path. (A function, not `REWARDS.get`:
    Ray pickles the reward actor's class by value, and a bound method would carry the registry,
    with every user function registered in the driver, into each worker.)"""
    return REWARDS.get(name)


def register_reward(name: str, correctness: bool = False) -> Callable:
    """Decorator: registers `fn` under `name`; `correctness`: the reward decides right or wrong."""

    def add(fn):
        fn.measures_correctness = correctness
        return REWARDS.register(name)(fn)

    return add


def measures_correctness(name: str) -> bool:
    return getattr(get_reward(name), "measures_correctness", False)


def correctness_reward(names) -> str | None:
    """The first of the configured reward `names` that decides correctness (None: none does)."""
    return next((name for name in names if measures_correctness(name)), None)
