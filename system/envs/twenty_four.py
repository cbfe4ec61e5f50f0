"""The 24 game, multi-turn: four numbers from 1-13, make 24; wrong answers get feedback and retries.

Countdown with the target fixed at 24 and numbers drawn at random until a brute-force solver
finds a solution (most draws have one; solutions are cached: there are only 1820 sets of four
numbers from 1-13).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from itertools import permutations
from typing import Optional, Sequence

from system.envs.countdown import ArithmeticConfig, CountdownEnv, Term, combinations
from system.envs.registry import register_env


def solve(numbers: Sequence[int], target: int = 24) -> Optional[str]:
    """An expression using each of `numbers` once that equals `target`, or None if there is none."""
    return _solve(tuple(sorted(numbers)), target)


@lru_cache(maxsize=4096)
def _solve(numbers: tuple[int, ...], target: int) -> Optional[str]:
    found = _search([(Fraction(n), str(n)) for n in numbers], target)
    return found[1:-1] if found and len(numbers) > 1 else found


def _search(terms: list[Term], target: int) -> Optional[str]:
    """Replace any two terms by one combination of them, until one term is left."""
    if len(terms) == 1:
        return terms[0][1] if terms[0][0] == target else None
    for i, j in permutations(range(len(terms)), 2):
        rest = [t for k, t in enumerate(terms) if k not in (i, j)]
        for term in combinations(terms[i], terms[j]):
            found = _search(rest + [term], target)
            if found:
                return found
    return None


@dataclass
class TwentyFourConfig(ArithmeticConfig):
    max_turns: int = 4
    max_number: int = 13

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_number < 3:
            raise ValueError(f"max_number must be >= 3 to make 24 from four numbers, got {self.max_number}")


@register_env("twenty_four")
class TwentyFourEnv(CountdownEnv):
    config_cls = TwentyFourConfig
    instructions = (
        "You play the 24 game. Write an arithmetic expression that equals 24, using each of the four "
        "given numbers exactly once and only + - * / and parentheses. If your answer is wrong you "
        "are told why and may try again."
    )
    example_answer = "(13 - 7) * (2 + 2)"

    def new_task(self, rng: random.Random) -> tuple[list[int], int, str]:
        """Four random numbers, drawn again until they can make 24."""
        while True:
            numbers = [rng.randint(1, self.config.max_number) for _ in range(4)]
            solution = solve(numbers, 24)
            if solution:
                return numbers, 24, solution
