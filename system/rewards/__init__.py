"""Rule-based rewards for GRPO: one registry, one signature, their combination and the scorer of a batch.

Every reward is `fn(completions: list[str], **columns) -> list[float | None]`: `columns` are the
data set's columns as lists aligned with `completions` (unknown ones are ignored) and None means
"cannot be scored" (left out of the advantage, never silently 0 or 1). See docs/adding-a-reward.md.
"""

from system.rewards import code, countdown, format, math_accuracy, reasoning_gym, shaping, steps  # noqa: F401
from system.rewards.combine import MODES, combine_rewards
from system.rewards.registry import available_rewards, correctness_reward, get_reward, register_reward
from system.rewards.scorer import RewardError, RewardScorer, RewardScores

__all__ = ["MODES", "RewardError", "RewardScorer", "RewardScores", "available_rewards", "combine_rewards",
           "correctness_reward", "get_reward", "register_reward"]
