"""`check_env`: the rules every env must keep, checked by playing it, as gymnasium's `check_env`.

A broken env does not fail loudly in training: a reset that ignores its seed makes every GRPO
group the same task, a reward out of range skews advantages, an exception on a strange reply
kills a rollout hours in. Run this on a new env before training on it:

    from system.envs import check_env
    check_env(MyEnv)                       # a class, a factory, or an instance
"""

from __future__ import annotations

import random
import time
import warnings
from typing import Any, Callable, NoReturn, Sequence

from system.envs.base import TextEnv
from system.envs.protocol import EnvProtocolError, PlayedEnv, is_env

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

# Tool calls a model can get wrong (for envs with tools, read by the hermes parser); {tool}: each tool's name.
TOOL_GARBAGE = [
    "<tool_call>",
    '<tool_call>{"name": </tool_call>',
    "<tool_call>[1, 2]</tool_call>",
    "<tool_call>" + "[" * 100_000 + "</tool_call>",
    '<tool_call>{"name": "no_such_tool", "arguments": {}}</tool_call>',
]
BAD_ARGUMENTS = ['{{"name": "{tool}"}}', '{{"name": "{tool}", "arguments": {{"zzz": 1}}}}',
                 '{{"name": "{tool}", "arguments": "not json"}}', '{{"name": "{tool}", "arguments": [1]}}']

Step = tuple  # (observation, reward, done, success, invalid): what must replay identically


class EnvCheckError(AssertionError):
    """An env broke one of the interface's rules; the message names the rule."""


class EnvCheckWarning(UserWarning):
    """A rule check_env could not check on this env; the message says what would let it."""


def check_env(env_or_factory: Any, seeds: Sequence[int] = range(8)) -> None:
    """Play the env over `seeds` as training plays it (system/envs/protocol.py: `PlayedEnv`);
    raise EnvCheckError naming the first rule it breaks. Takes a class, a factory or an instance.

    Rules: types (the protocol's); the same seed gives the same task and the same outcomes for the
    same replies (also in a fresh instance, given a class or factory); different seeds give
    different tasks; every reward lies in `reward_range`; no reply, however malformed (tool calls
    too, for an env with tools), raises or takes more than a few seconds.

    Seeds that all play the same episode break the rule only where that proves the seed ignored: the
    env's own plausible moves found no difference, or a TextEnv's `start` drew nothing from its rng.
    Otherwise the task may be hidden behind the first observation (a secret number), and only a
    warning says that a `sample_action` would let the rule be checked.
    """
    given = env_or_factory
    make = (lambda: given) if is_env(given) and not isinstance(given, type) else given
    env = _made(make)
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
        _same_episodes(env, make, list(seeds))
    payloads = _payloads(env)
    for reply in payloads:
        _call(env, 0, "reset", lambda: env.reset(0))
        _step(env, reply, seed=0)
    _play(env, seed=0, replies=payloads)


def _same_episodes(env: PlayedEnv, make: Callable[[], Any], seeds: list[int]) -> None:
    """Every seed played the same episode: a failure where the seed is shown to be ignored, else a
    warning (the env's secret may just not have shown in replies that were not its own moves)."""
    same = f"seeds {seeds} all gave the same episode"
    if _has_own_moves(env.env) or _start_ignores_rng(env, make):
        _fail(env, "different seeds, different tasks", f"{same}: is the seed ignored?")
    name = type(env.env).__name__
    warnings.warn(f"check_env could not check the rule 'different seeds, different tasks' of {name}: {same}, "
                  f"and without plausible moves it cannot tell a task hidden from the first observation "
                  f"(a secret drawn from the seed) from a seed that is ignored. Give {name} a "
                  f"`sample_action(rng)` (a TextEnv: `sample_answer(rng)`) returning plausible moves, and "
                  f"check_env will play them to check that different seeds give different episodes.",
                  EnvCheckWarning, stacklevel=3)


def _has_own_moves(env: Any) -> bool:
    """Whether the env says what a plausible move is: a `sample_action`, beyond TextEnv's default
    (its `example_answer`, the same move whatever the task)."""
    if isinstance(env, TextEnv):
        return type(env).sample_answer is not TextEnv.sample_answer or \
            type(env).sample_action is not TextEnv.sample_action
    return callable(getattr(env, "sample_action", None))


def _start_ignores_rng(env: PlayedEnv, make: Callable[[], Any]) -> bool:
    """Whether a TextEnv's `start` (reset's, when reset is TextEnv's) draws nothing from the seeded rng."""
    probe = _made(make).env
    if not isinstance(probe, TextEnv) or type(probe).reset is not TextEnv.reset:
        return False
    rng = random.Random(0)
    drawn = rng.getstate()
    _call(env, 0, "start", lambda: probe.start(rng))
    return rng.getstate() == drawn


def _made(make: Callable[[], Any]) -> PlayedEnv:
    env = make()
    if not is_env(env):
        raise EnvCheckError(f"the factory returned {env!r:.80}, not an env (an object with reset and step)")
    return PlayedEnv(env)


def _fail(env: PlayedEnv, rule: str, message: str) -> NoReturn:
    raise EnvCheckError(f"{type(env.env).__name__} breaks the rule '{rule}': {message}")


def _payloads(env: PlayedEnv) -> list[str]:
    """The garbage, also inside the answer tags of an env that reads its moves from them (TextEnv's
    `wrap`), and malformed tool calls when it has tools."""
    wrap = getattr(env.env, "wrap", None)
    payloads = GARBAGE + ([wrap(g) for g in GARBAGE] if callable(wrap) else [])
    _call(env, 0, "reset", lambda: env.reset(0))
    if env.tools:
        payloads += TOOL_GARBAGE + [f"<tool_call>{form.format(tool=name)}</tool_call>"
                                    for name in env.tools for form in BAD_ARGUMENTS]
    return payloads


def _play(env: PlayedEnv, seed: int, replies: Sequence[str] = ()) -> list[Step]:
    """One episode: plausible replies mixed with garbage (or `replies`, in turn), checked at each step.
    It ends: PlayedEnv ends every episode after max_turns replies."""
    steps: list[Step] = [(_call(env, seed, "reset", lambda: env.reset(seed)),)]
    script = random.Random(0)  # the same replies for every seed, so episodes differ only by task
    done = False
    while not done:
        if replies:
            reply = replies[(len(steps) - 1) % len(replies)]
        elif script.random() < 0.8 and (sample := _call(env, seed, "sample_action",
                                                        lambda: env.sample_action(script))) is not None:
            reply = sample
        else:
            reply = script.choice(GARBAGE)
        steps.append(_step(env, reply, seed))
        done = steps[-1][2]
    return steps


def _step(env: PlayedEnv, reply: str, seed: int) -> Step:
    began = time.perf_counter()
    observation, reward, done, info = _call(env, seed, f"step({reply!r:.80})", lambda: env.step(reply))
    seconds = time.perf_counter() - began
    if seconds > STEP_SECONDS:
        _fail(env, "no hangs", f"step({reply!r:.80}) took {seconds:.1f}s (seed {seed})")
    if not env.reward_range[0] <= reward <= env.reward_range[1]:
        outside = f"step({reply!r:.60}) gave {reward}, outside {env.reward_range} (seed {seed})"
        _fail(env, "rewards within reward_range", outside)
    return observation, reward, done, info["success"], info["invalid_action"]


def _call(env: PlayedEnv, seed: int, what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except EnvProtocolError as e:
        _fail(env, "types", f"{e} (seed {seed})")
    except Exception as e:
        _fail(env, "no exceptions", f"{what} raised {type(e).__name__}: {str(e):.200} (seed {seed})")
