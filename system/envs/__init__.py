"""Text environments for multi-turn RL: the interface, the registry, the checker, the shipped envs.

    from system.envs import make_env, check_env
    env = make_env("twenty_four", max_turns=3)
    observation = env.reset(seed=7)
    observation, reward, done, info = env.step("... <answer>(8 - 4) * 6</answer>")
"""

from system.envs.base import EnvConfig, Feedback, TextEnv
from system.envs.checker import EnvCheckError, check_env
from system.envs.registry import available_envs, make_env, register_env, resolve_env

from system.envs import countdown, frozen_lake, twenty_four  # noqa: E402,F401  (registers them)

__all__ = [
    "EnvCheckError",
    "EnvConfig",
    "Feedback",
    "TextEnv",
    "available_envs",
    "check_env",
    "make_env",
    "register_env",
    "resolve_env",
]
