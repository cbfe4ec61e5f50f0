"""Text environments for multi-turn RL: the protocol, the registry, the checker, the shipped envs.

    from system.envs import make_env, check_env
    env = make_env("twenty_four", max_turns=3)
    observation = env.reset(seed=7)
    observation, reward, done, info = env.step("... <answer>(8 - 4) * 6</answer>")

An env is any class with `reset(seed)` and `step(action)` (protocol.py); `TextEnv` (base.py) is
the convenient base for writing one; `PlayedEnv` plays one as training does (turn limit, tools).
"""

from system.envs.base import EnvConfig, Feedback, TextEnv
from system.envs.checker import EnvCheckError, check_env
from system.envs.protocol import EnvProtocolError, PlayedEnv, is_env
from system.envs.registry import available_envs, make_env, register_env, resolve_env

from system.envs import countdown, frozen_lake, python_arithmetic, twenty_four  # noqa: E402,F401  (registers them)

__all__ = [
    "EnvCheckError",
    "EnvConfig",
    "EnvProtocolError",
    "Feedback",
    "PlayedEnv",
    "TextEnv",
    "available_envs",
    "check_env",
    "is_env",
    "make_env",
    "register_env",
    "resolve_env",
]
