"""The env protocol, and `PlayedEnv`: any env that keeps it, as training and check_env play it.

An env is any object with two methods, gymnasium's, with text for actions and observations:

    reset(seed: int) -> str                                    the first user message
    step(action: str) -> (observation, reward, done, info)     action: the model's whole reply

and, optionally, these attributes (read after every `reset`, so a task may change them):

    system_prompt: str        shown once, before the first observation (default: none)
    max_turns: int            replies per episode; after this many it is ended, info["truncated"] (default 10)
    reward_range: (lo, hi)    bounds of one step's reward, which check_env holds it to (default: any number)
    tools: list               Tools, registered tool names or OpenAI function schemas (system/tools)
    tool_parser: str          how tool calls are read from a reply (system/tools/parsers.py; default hermes)
    sample_action(rng) -> str a plausible reply, for check_env to reach the env's states

`info` may hold `success` (bool: the task is solved; absent = not solved) and `invalid_action`
(bool: the reply was no legal move; absent = it was). Subclassing `TextEnv` (system/envs/base.py)
gives all of this for writing `start` and `respond`; it is a convenience, not a requirement.

`PlayedEnv` wraps an env (gymnasium's TimeLimit and PassiveEnvChecker, plus tools): it fills in
the defaults, ends the episode after `max_turns` replies, raises `EnvProtocolError` naming what is
wrong with an answer of the wrong type (at once, not as a skewed metric hours later), and answers a
reply that calls tools itself, by running them (system/tools) and returning their results as tool
messages; the env's `step` sees only the other replies. A tool turn has reward 0 and counts as a turn.
"""

from __future__ import annotations

import math
import random
from numbers import Real
from typing import Any, Optional

from system.tools import call_tool, get_parser, resolve_tools

DEFAULT_MAX_TURNS = 10


class EnvProtocolError(TypeError):
    """The env answered outside the protocol (a wrong type, a non-finite reward)."""


class PlayedEnv:
    """One env, played one episode at a time: `reset(seed)`, then `step(reply)` until done."""

    def __init__(self, env: Any):
        self.env = env
        self.turn, self.done, self.tools = 0, True, {}

    @property
    def system_prompt(self) -> str:
        return getattr(self.env, "system_prompt", "")

    @property
    def max_turns(self) -> int:
        return getattr(self.env, "max_turns", DEFAULT_MAX_TURNS)

    @property
    def reward_range(self) -> tuple[float, float]:
        return getattr(self.env, "reward_range", (-math.inf, math.inf))

    @property
    def tool_schemas(self) -> list[dict]:
        """The current episode's tools as OpenAI function schemas: what the prompt shows."""
        return [tool.schema for tool in self.tools.values()]

    def sample_action(self, rng: random.Random) -> Optional[str]:
        """The env's plausible reply, or None if it offers none."""
        sample = getattr(self.env, "sample_action", None)
        return sample(rng) if sample else None

    def reset(self, seed: int) -> str:
        observation = self.env.reset(seed)
        if not isinstance(observation, str) or not observation:
            raise EnvProtocolError(f"{type(self.env).__name__}.reset({seed}) must return a non-empty str, "
                                   f"got {observation!r:.80}")
        self._check_attributes()
        self.turn, self.done = 0, False
        self.tools = resolve_tools(getattr(self.env, "tools", ()))
        self.tool_parser = getattr(self.env, "tool_parser", "hermes")
        self.parse_calls = get_parser(self.tool_parser).parse
        return observation

    def step(self, action: str) -> tuple[str | list[dict], float, bool, dict]:
        """(observation, reward, done, info); the observation of a tool turn is a list of tool messages."""
        if self.done:
            raise RuntimeError(f"{type(self.env).__name__}: step() on a finished episode: call reset(seed)")
        self.turn += 1
        calls = self.parse_calls(action) if self.tools else []
        if calls:
            results = [call_tool(self.tools, call) for call in calls]
            observation = [{"role": "tool", "content": result.content} for result in results]
            errors = sum(result.error for result in results)
            reward, done, info = 0.0, False, {"tool_calls": len(calls), "tool_errors": errors}
        else:
            observation, reward, done, info = self._checked(self.env.step(action))
        truncated = not done and self.turn >= self.max_turns
        self.done = done or truncated
        info = {"success": False, "invalid_action": False, "tool_calls": 0, "tool_errors": 0, **info,
                "turn": self.turn, "truncated": truncated or bool(info.get("truncated", False))}
        return observation, float(reward), self.done, info

    def _check_attributes(self) -> None:
        prompt, turns, bounds = self.system_prompt, self.max_turns, self.reward_range
        name = type(self.env).__name__
        if not isinstance(prompt, str):
            raise EnvProtocolError(f"{name}.system_prompt must be a str, got {prompt!r:.80}")
        if type(turns) is not int or turns < 1:
            raise EnvProtocolError(f"{name}.max_turns must be an int >= 1, got {turns!r}")
        if not (isinstance(bounds, tuple) and len(bounds) == 2 and all(isinstance(b, Real) for b in bounds)
                and bounds[0] <= bounds[1]):
            raise EnvProtocolError(f"{name}.reward_range must be a (low, high) tuple of numbers, "
                                   f"low <= high, got {bounds!r}")

    def _checked(self, result: Any) -> tuple[str, float, bool, dict]:
        name = f"{type(self.env).__name__}.step()"
        if not (isinstance(result, tuple) and len(result) == 4):
            raise EnvProtocolError(f"{name} must return (observation, reward, done, info): {result!r:.80}")
        observation, reward, done, info = result
        for what, value, kind in [("observation", observation, str), ("done", done, bool),
                                  ("info", info, dict)]:
            if not isinstance(value, kind):
                raise EnvProtocolError(f"{name} returned {what}={value!r:.80}, not a {kind.__name__}")
        if isinstance(reward, bool) or not isinstance(reward, Real) or not math.isfinite(reward):
            raise EnvProtocolError(f"{name} returned reward={reward!r:.80}, not a finite number")
        for key in ("success", "invalid_action"):
            if key in info and not isinstance(info[key], bool):
                raise EnvProtocolError(f"{name}: info[{key!r}] must be a bool, got {info[key]!r:.80}")
        return result


def is_env(obj: Any) -> bool:
    """Whether `obj` (a class or an instance) keeps the protocol's two methods."""
    return callable(getattr(obj, "reset", None)) and callable(getattr(obj, "step", None))
