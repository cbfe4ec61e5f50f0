"""Task generators: datasets made locally from a seed, so no hub is needed to train.

Each generator yields rows of plain columns; the prompt template turns a row into a chat.
Countdown rows are solvable by construction: the target is the value of a random expression
over the given numbers, each used once (TinyZero's task, with a difficulty we can dial down).
"""

from __future__ import annotations

import random
from typing import Iterator

from system.registry import Registry
from system.rewards.expression import evaluate_expression

GENERATORS = Registry("data generator")
register_generator = GENERATORS.register


@register_generator("countdown")
def countdown(rng: random.Random, min_numbers: int = 3, max_numbers: int = 3, max_number: int = 20) -> Iterator[dict]:
    while True:
        nums = [rng.randint(1, max_number) for _ in range(rng.randint(min_numbers, max_numbers))]
        value = nums[0]
        for n in nums[1:]:
            op = rng.choice("+-*")
            value = value + n if op == "+" else value - n if op == "-" else value * n
        if 0 < value <= 1000:
            shuffled = nums[:]
            rng.shuffle(shuffled)
            yield {"nums": shuffled, "target": value}


@register_generator("arithmetic")
def arithmetic(rng: random.Random, min_numbers: int = 2, max_numbers: int = 3, max_number: int = 20) -> Iterator[dict]:
    """`a + b * c`-style questions with a numeric gold answer (for the math-verify reward)."""
    while True:
        nums = [rng.randint(1, max_number) for _ in range(rng.randint(min_numbers, max_numbers))]
        question = " ".join(f"{rng.choice('+-*')} {n}" for n in nums[1:])
        question = f"{nums[0]} {question}"
        yield {"question": question, "answer": str(evaluate_expression(question))}


def generate(name: str, count: int, seed: int, **params) -> list[dict]:
    rng = random.Random(seed)
    stream = GENERATORS.get(name)(rng, **params)
    return [next(stream) for _ in range(count)]
