"""Reward functions by name: the shipped ones register themselves, users point at their own.

Every reward has one signature, `fn(completions, **columns) -> list[float | None]`, so the
config can name any of them (`reward.functions: {accuracy: 1.0, my_pkg.rewards:brevity: 0.1}`)
and the driver never needs to know what a reward reads.
"""

from __future__ import annotations

from typing import Callable, Optional

from system.registry import Registry

RewardFn = Callable[..., list[Optional[float]]]

REWARDS = Registry("reward", callable, "a function")
register_reward = REWARDS.register
get_reward = REWARDS.get
available_rewards = REWARDS.names
