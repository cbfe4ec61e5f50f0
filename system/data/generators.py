"""Task generators: datasets made locally from a seed, so no hub is needed to train.

Each generator yields rows of plain columns; the prompt template turns a row into a chat.
Countdown rows are solvable by construction: the target is the value of a random expression
over the given numbers, each used once (TinyZero's task, with a difficulty we can dial down).
"""

from __future__ import annotations

import random
from typing import Callable, Iterator

GENERATORS: dict[str, Callable[..., Iterator[dict]]] = {}


def register_generator(name: str):
    def wrap(fn):
        GENERATORS[name] = fn
        return fn

    return wrap


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
def arithmetic(rng: random.Random, min_numbers: int = 2, max_numbers: int = 3, max_number: int = 20, **_) -> Iterator[dict]:
    """`a + b * c`-style questions with a numeric gold answer (for the math-verify reward)."""
    while True:
        nums = [rng.randint(1, max_number) for _ in range(rng.randint(min_numbers, max_numbers))]
        expr = str(nums[0])
        for n in nums[1:]:
            expr += f" {rng.choice('+-*')} {n}"
        value = 0
        for term in expr.split(" + "):  # evaluate by hand: products bind first, then + and -
            parts = term.split(" - ")
            prods = [eval_product(p) for p in parts]
            value += prods[0] - sum(prods[1:])
        yield {"question": expr, "answer": str(value)}


def eval_product(text: str) -> int:
    result = 1
    for factor in text.split(" * "):
        result *= int(factor)
    return result


def generate(name: str, count: int, seed: int, **params) -> list[dict]:
    if name not in GENERATORS:
        raise KeyError(f"unknown generator '{name}'; known: {sorted(GENERATORS)}")
    rng = random.Random(seed)
    stream = GENERATORS[name](rng, **params)
    return [next(stream) for _ in range(count)]
