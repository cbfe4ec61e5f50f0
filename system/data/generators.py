"""Task generators: datasets made locally from a seed, so no hub is needed to train.

A generator is `fn(rng, cfg) -> iterator of rows` (cfg: DataConfig, for its knobs); the prompt
template turns a row into a chat. The tasks are the ones the environments pose (system/envs/), so
single-turn data and multi-turn envs agree on what a Countdown or 24 task is:
- countdown: TinyZero's task, `nums` (min_numbers..max_numbers of them, 1..max_number) and a
  `target` (1..max_target) that is the value of a random expression over all of them (+ - * /,
  any bracketing): reachable by construction;
- twenty_four: four numbers from 1-13 that can make 24 (an exact solver over fractions checks
  each draw; about 79% of draws can), target 24; twenty_four_env: the same tasks as the 24 env's
  first turns (its system prompt and observation, the env built from data.env_params);
- arithmetic: `a + b * c`-style questions with a numeric gold `answer`.
"""

from __future__ import annotations

import random
from typing import Iterator

from system.data.rows import DataError
from system.envs.countdown import CountdownConfig, CountdownEnv
from system.envs.registry import make_env
from system.envs.twenty_four import TwentyFourEnv
from system.registry import Registry
from system.rewards.expression import evaluate_expression

GENERATORS = Registry("data generator")
register_generator = GENERATORS.register

# The prompt template a generator's rows get when data.prompt_template is not set.
DEFAULT_TEMPLATES = {"countdown": "countdown", "twenty_four": "countdown", "arithmetic": "math"}


def _check_counts(cfg, least: int) -> None:
    if not least <= cfg.min_numbers <= cfg.max_numbers or cfg.max_number < 1:
        raise DataError(f"data.min_numbers={cfg.min_numbers}, data.max_numbers={cfg.max_numbers}: need "
                        f"{least} <= min_numbers <= max_numbers, and data.max_number >= 1 (is {cfg.max_number})")


def countdown_tasks(rng: random.Random, cfg) -> Iterator[tuple[list[int], int, str]]:
    """(numbers, target, an expression over the numbers that equals the target), forever."""
    _check_counts(cfg, 2)
    if cfg.max_target < 1:
        raise DataError(f"data.max_target must be >= 1, got {cfg.max_target}")
    envs = {k: CountdownEnv(CountdownConfig(num_numbers=k, max_number=cfg.max_number, min_target=1,
                                            max_target=cfg.max_target))
            for k in range(cfg.min_numbers, cfg.max_numbers + 1)}
    while True:
        yield envs[rng.randint(cfg.min_numbers, cfg.max_numbers)].new_task(rng)


@register_generator("countdown")
def countdown(rng: random.Random, cfg) -> Iterator[dict]:
    for numbers, target, _ in countdown_tasks(rng, cfg):
        yield {"nums": numbers, "target": target}


@register_generator("twenty_four")
def twenty_four(rng: random.Random, cfg) -> Iterator[dict]:
    """The 24 game (the count and size knobs do not apply: four numbers from 1-13)."""
    env = TwentyFourEnv()
    while True:
        numbers, target, _ = env.new_task(rng)
        yield {"nums": numbers, "target": target}


@register_generator("twenty_four_env")
def twenty_four_env(rng: random.Random, cfg) -> Iterator[dict]:
    """First turns of the multi-turn 24 env, as rows: the env's own system prompt and first
    observation (`prompt`, a chat) for training seeds (even ones, as GRPO's episodes play), so that
    cold-start SFT data for the env is written in the very chat its episodes start with. The env is
    built from `data.env_params` (set them as the GRPO run's env.params); each row names its
    `env_seed` (and those params), so a teacher can play the episode on (system/teachers/episodes.py)."""
    env = make_env("twenty_four", **cfg.env_params)
    while True:
        seed = 2 * rng.randrange(1 << 30)
        observation = env.reset(seed)
        chat = [{"role": "system", "content": env.system_prompt}, {"role": "user", "content": observation}]
        params = {"env_params": dict(cfg.env_params)} if cfg.env_params else {}
        yield {"nums": list(env.numbers), "target": env.target, "prompt": chat, "env_seed": seed, **params}


@register_generator("arithmetic")
def arithmetic(rng: random.Random, cfg) -> Iterator[dict]:
    """Questions of min_numbers..max_numbers numbers (1..max_number), for the math-verify rewards."""
    _check_counts(cfg, 1)
    while True:
        nums = [rng.randint(1, cfg.max_number) for _ in range(rng.randint(cfg.min_numbers, cfg.max_numbers))]
        question = " ".join(f"{rng.choice('+-*')} {n}" for n in nums[1:])
        question = f"{nums[0]} {question}"
        yield {"question": question, "answer": str(evaluate_expression(question))}


def generate(name: str, count: int, seed: int, cfg) -> list[dict]:
    stream = GENERATORS.get(name)(random.Random(seed), cfg)
    return [next(stream) for _ in range(count)]
