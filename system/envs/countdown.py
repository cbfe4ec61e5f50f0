"""Countdown: reach a target by combining the given numbers, each used once, with + - * /.

Single-turn by default (TinyZero's task as an env); with `max_turns` > 1 the model gets told what
was wrong ("uses 5 twice", "evaluates to 22, not 24") and may try again. Answers are checked by
the safe evaluator the reward functions share (system/rewards/expression.py), never by `eval`.

Wrong answers are graded, so that a small model that rarely solves a task still sees which of its
replies came closer: no readable expression < an expression over the wrong numbers (the more of
the given numbers it uses, the better) < the right numbers with the wrong value < the target. With
one penalty for every wrong reply, all episodes of a GRPO group score the same and teach nothing.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Sequence

from system.envs.base import EnvConfig, Feedback, TextEnv, shorten
from system.envs.registry import register_env
from system.rewards.expression import evaluate_expression, numbers_used

Term = tuple[Fraction, str]  # a value and the expression that makes it


def combinations(x: Term, y: Term) -> Iterator[Term]:
    """Every value one operation makes of x and y, in that order (x - y, x / y)."""
    (a, ea), (b, eb) = x, y
    yield a + b, f"({ea} + {eb})"
    yield a - b, f"({ea} - {eb})"
    yield a * b, f"({ea} * {eb})"
    if b != 0:
        yield a / b, f"({ea} / {eb})"


def random_expression(numbers: Sequence[int], rng: random.Random) -> Term:
    """Combine all numbers, in a random order, by random operations: a reachable value and how."""
    terms = [(Fraction(n), str(n)) for n in numbers]
    rng.shuffle(terms)
    while len(terms) > 1:
        x, y = terms.pop(), terms.pop()
        terms.insert(rng.randrange(len(terms) + 1), rng.choice(list(combinations(x, y))))
    value, expression = terms[0]
    return value, expression[1:-1] if len(numbers) > 1 else expression


def _times(count: int) -> str:
    return {1: "once", 2: "twice", 3: "three times"}.get(count, f"{count} times")


def usage_problems(used: Sequence[int], given: Sequence[int]) -> list[str]:
    """What is wrong with the numbers an expression uses, in words; empty when each is used once."""
    used_count, given_count = Counter(used), Counter(given)
    extra, missing = [], []
    for n in sorted(used_count | given_count):
        u, g = used_count[n], given_count[n]
        if u == 0:
            missing.append(f"does not use {n}")
        elif g == 0:
            extra.append(f"uses {n} (not one of the numbers)")
        elif g == 1 and u > 1:
            extra.append(f"uses {n} {_times(u)}")
        elif u != g:
            extra.append(f"uses {n} {_times(u)} (given {_times(g)})")
    return extra + missing


def share_right(used: Sequence[int], given: Sequence[int]) -> float:
    """The share of an expression's numbers that are right: 1.0 only when each given number is used once."""
    matched = sum((Counter(used) & Counter(given)).values())
    return matched / max(len(used), len(given))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@dataclass
class ArithmeticConfig(EnvConfig):
    """What countdown and the 24 game share."""

    max_number: int = 20  # numbers are drawn from 1..max_number
    turn_discount: float = 1.0  # a correct answer on turn t earns turn_discount ** (t - 1)
    # Misses, worst first (invalid_penalty, -0.1: no move or no valid expression). An expression that
    # does not use each number once earns wrong_numbers_penalty if none of its numbers is right,
    # rising towards wrong_value_penalty with the share of them that is.
    wrong_numbers_penalty: float = -0.05
    wrong_value_penalty: float = 0.0  # each number used once, but the value is not the target

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_number < 1:
            raise ValueError(f"max_number must be >= 1, got {self.max_number}")
        if not 0 < self.turn_discount <= 1:
            raise ValueError(f"turn_discount must be in (0, 1], got {self.turn_discount}")
        if max(self.invalid_penalty, self.wrong_numbers_penalty, self.wrong_value_penalty) >= 1:
            raise ValueError("invalid_penalty, wrong_numbers_penalty and wrong_value_penalty must stay "
                             "below 1 (the reward of a solved task)")


@dataclass
class CountdownConfig(ArithmeticConfig):
    num_numbers: int = 3
    min_target: int = 10
    max_target: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_numbers < 2 or self.min_target > self.max_target:
            raise ValueError("need num_numbers >= 2 and min_target <= max_target")


@register_env("countdown")
class CountdownEnv(TextEnv):
    """Numbers and a target from the seed; solvable by construction (the target is a combination)."""

    config_cls = CountdownConfig
    instructions = (
        "You are given some numbers and a target. Write an arithmetic expression that equals the "
        "target, using every given number exactly once and only + - * / and parentheses."
    )
    example_answer = "(1 + 2) * 3"

    @property
    def reward_range(self) -> tuple[float, float]:
        cfg = self.config
        return min(0.0, cfg.invalid_penalty, cfg.wrong_numbers_penalty, cfg.wrong_value_penalty), 1.0

    def start(self, rng: random.Random) -> str:
        self.numbers, self.target, self.solution = self.new_task(rng)
        return f"Numbers: {' '.join(map(str, self.numbers))}\nTarget: {self.target}"

    def new_task(self, rng: random.Random) -> tuple[list[int], int, str]:
        """Numbers, target and one solution; draws again until the target is a whole number in range."""
        cfg = self.config
        for _ in range(10_000):
            numbers = [rng.randint(1, cfg.max_number) for _ in range(cfg.num_numbers)]
            value, solution = random_expression(numbers, rng)
            if value.denominator == 1 and cfg.min_target <= value <= cfg.max_target:
                return numbers, int(value), solution
        raise ValueError(f"targets in [{cfg.min_target}, {cfg.max_target}] are too rare with these numbers")

    def respond(self, answer: str) -> Feedback:
        quoted = shorten(answer)
        try:
            value, used = evaluate_expression(answer), numbers_used(answer)
        except ValueError as e:
            reason = shorten(str(e), 120).rstrip(".")
            return self.invalid(f"{quoted} is not a valid expression: {reason}.{self.try_again()}")
        problems = usage_problems(used, self.numbers)
        if problems:
            low, high = self.config.wrong_numbers_penalty, self.config.wrong_value_penalty
            reward = low + (high - low) * share_right(used, self.numbers)
            return Feedback(f"{quoted} {_join(problems)}.{self.try_again()}", reward=reward, invalid=True)
        if value != self.target:
            message = f"{quoted} evaluates to {value}, not {self.target}.{self.try_again()}"
            return Feedback(message, reward=self.config.wrong_value_penalty)
        reward = self.config.turn_discount ** (self.turn - 1)
        return Feedback(f"Correct: {quoted} = {self.target}.", reward=reward, done=True, success=True)

    def try_again(self) -> str:
        left = self.turns_left
        return f" Try again ({left} {'turn' if left == 1 else 'turns'} left)." if left else ""

    def sample_answer(self, rng: random.Random) -> str:
        return random_expression(self.numbers, rng)[1]
