"""`check_env`: the rules every env must keep, checked by playing it, as gymnasium's `check_env`.

A broken env does not fail loudly in training: a reset that ignores its seed makes every GRPO
group the same task, a reward out of range skews advantages, an exception on a strange reply
kills a rollout hours in. Run this on a new env before training on it:

    from system.envs import check_env
    check_env(MyEnv)                       # a class, a factory, or an instance
"""

from __future__ import annotations

import math
import random
import time
from numbers import Real
from typing import Any, Callable, NoReturn, Sequence, Union

from system.envs.base import TextEnv

STEP_SECONDS = 2.0  # slower than this on one reply is a hang waiting to happen in a rollout

# Replies a model can produce; each is sent as is and, where it is not a tag itself, inside the tags.
GARBAGE = [
    "",
    " \n\t ",
    "x" * 100_000,
    "🙂 ∑ naïve 你好 \u202e\x00",
    "<answer>",
    "</answer>",
    "</answer> backwards <answer>",
    "<answer><answer>1</answer></answer>",
    "__import__('os').system('echo pwned')",
    "9**9**9",
    "10**10**10**10",
    "(" * 5_000,
    "1+" * 50_000 + "1",
    "-" * 100_000 + "1",
    "1/0",
    "-1e309",
    "nan",
    "None",
    "{'a': [1, 2]}",
    "UP DOWN left right 1 2 3",
]

Step = tuple  # (observation, reward, done, success, invalid): what must replay identically


class EnvCheckError(AssertionError):
    """An env broke one of the interface's rules; the message names the rule."""


def check_env(env_or_factory: Union[TextEnv, Callable[[], TextEnv]], seeds: Sequence[int] = range(8)) -> None:
    """Play the env over `seeds`; raise EnvCheckError naming the first rule it breaks.

    Rules: return types; the same seed gives the same task and the same outcomes for the same
    replies (also in a fresh instance, given a class or factory); different seeds give different
    tasks; every episode ends within `max_turns` whatever the replies; every reward lies in
    `reward_range`; no reply, however malformed, raises or takes more than a few seconds.
    """
    make = env_or_factory if not isinstance(env_or_factory, TextEnv) else (lambda: env_or_factory)
    env = _made(make)
    _check_attributes(env)
    runs = []
    for seed in seeds:
        runs.append(_play(env, seed))
        again = _play(_made(make), seed)
        if again != runs[-1]:
            turn, a, b = next((i, a, b) for i, (a, b) in enumerate(zip(runs[-1], again)) if a != b)
            where = "reset" if turn == 0 else f"step {turn}"
            difference = f"seed {seed} replayed differently at {where}: {a!r:.200} vs {b!r:.200}"
            _fail(env, "same seed, same episode", difference)
    if len(runs) > 1 and all(run == runs[0] for run in runs):
        same = f"seeds {list(seeds)} all gave the same episode: is the seed ignored?"
        _fail(env, "different seeds, different tasks", same)
    payloads = GARBAGE + [env.wrap(g) for g in GARBAGE if g not in env.tags]
    for reply in payloads:
        env.reset(0)
        _step(env, reply, seed=0)
    _play(env, seed=0, replies=payloads)


def _made(make: Callable[[], TextEnv]) -> TextEnv:
    env = make()
    if not isinstance(env, TextEnv):
        raise EnvCheckError(f"the factory returned {env!r}, not a TextEnv")
    return env


def _fail(env: TextEnv, rule: str, message: str) -> NoReturn:
    raise EnvCheckError(f"{type(env).__name__} breaks the rule '{rule}': {message}")


def _check_attributes(env: TextEnv) -> None:
    prompt, turns, bounds = env.system_prompt, env.max_turns, env.reward_range
    if not isinstance(prompt, str) or not prompt.strip():
        _fail(env, "types", f"system_prompt must be a non-empty str, got {prompt!r:.80}")
    if type(turns) is not int or turns < 1:
        _fail(env, "types", f"max_turns must be an int >= 1, got {turns!r}")
    if not (type(bounds) is tuple and len(bounds) == 2 and all(isinstance(b, Real) for b in bounds)):
        _fail(env, "types", f"reward_range must be a (low, high) tuple of numbers, got {bounds!r}")
    if not bounds[0] <= bounds[1]:
        _fail(env, "types", f"reward_range {bounds} has low > high")


def _play(env: TextEnv, seed: int, replies: Sequence[str] = ()) -> list[Step]:
    """One episode: plausible moves mixed with garbage (or `replies`, in turn), checked at each step."""
    observation = _call(env, seed, "reset", lambda: env.reset(seed))
    if not isinstance(observation, str) or not observation:
        _fail(env, "types", f"reset({seed}) must return a non-empty str, got {observation!r:.80}")
    script = random.Random(0)  # the same replies for every seed, so episodes differ only by task
    steps: list[Step] = [(observation,)]
    for turn in range(env.max_turns):
        if replies:
            reply = replies[turn % len(replies)]
        elif script.random() < 0.8:
            reply = env.wrap(_call(env, seed, "sample_answer", lambda: env.sample_answer(script)))
        else:
            reply = script.choice(GARBAGE)
        steps.append(_step(env, reply, seed))
        if steps[-1][2]:
            return steps
    _fail(env, "ends within max_turns", f"seed {seed}: not done after max_turns={env.max_turns} steps")


def _step(env: TextEnv, reply: str, seed: int) -> Step:
    began = time.perf_counter()
    result = _call(env, seed, f"step({reply!r:.80})", lambda: env.step(reply))
    seconds = time.perf_counter() - began
    if seconds > STEP_SECONDS:
        _fail(env, "no hangs", f"step({reply!r:.80}) took {seconds:.1f}s (seed {seed})")
    if not (isinstance(result, tuple) and len(result) == 4):
        _fail(env, "types", f"step() must return (observation, reward, done, info), got {result!r:.200}")
    observation, reward, done, info = result
    for name, value, kind in [("observation", observation, str), ("done", done, bool), ("info", info, dict)]:
        if not isinstance(value, kind):
            _fail(env, "types", f"step() returned {name}={value!r:.80}, not a {kind.__name__}")
    if isinstance(reward, bool) or not isinstance(reward, (int, float)) or math.isnan(reward):
        _fail(env, "types", f"step() returned reward={reward!r}, not a number")
    if not env.reward_range[0] <= reward <= env.reward_range[1]:
        outside = f"step({reply!r:.60}) gave {reward}, outside {env.reward_range} (seed {seed})"
        _fail(env, "rewards within reward_range", outside)
    for key in ("success", "invalid_action"):
        if not isinstance(info.get(key), bool):
            _fail(env, "types", f"info[{key!r}] must be a bool, got {info.get(key)!r} (info={info!r:.200})")
    return observation, reward, done, info["success"], info["invalid_action"]


def _call(env: TextEnv, seed: int, what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as e:
        _fail(env, "no exceptions", f"{what} raised {type(e).__name__}: {str(e):.200} (seed {seed})")
