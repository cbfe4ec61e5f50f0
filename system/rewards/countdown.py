"""Countdown and the 24 game, scored as TinyZero does.

No `<answer>` -> 0.0; an answer that is not a valid expression, does not use each given number
exactly once, or misses the target -> `format_score` (0.1); the target reached -> 1.0. The small
format score teaches the answer format early in R1-Zero-style training, before the model can
solve anything. Expressions go through the safe evaluator in `expression.py`, never `eval`.

One departure from TinyZero: the prompt asks for "an equation that equals {target}", and models
answer `3 + 4 = 7`; TinyZero counts the 7 as an extra number (format score only), here the left
side is scored and the number after a final `=` is the model's claim, not a use of a number.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from system.rewards.expression import ExpressionError, evaluate_expression, numbers_used
from system.rewards.extract import tag_content
from system.rewards.registry import register_reward

_CLAIMED_RESULT = re.compile(r"=\s*-?\d+(\.\d+)?\s*$")


def equation_value(completion: str, numbers: Sequence[int], tag: str = "answer") -> tuple[bool, Optional[float]]:
    """(whether there is an answer, its value if it is a valid expression that uses each given
    number exactly once, else None)."""
    answer = tag_content(completion, tag)
    if answer is None:
        return False, None
    answer = _CLAIMED_RESULT.sub("", answer)  # "3 + 4 = 7" -> "3 + 4"
    try:
        if sorted(numbers_used(answer)) != sorted(numbers):
            return True, None
        return True, evaluate_expression(answer)
    except ExpressionError:
        return True, None


def score_equation(
    completion: str, numbers: Sequence[int], target: float, format_score: float = 0.1, tag: str = "answer"
) -> float:
    """TinyZero's score of one completion for one (numbers, target) task."""
    answered, value = equation_value(completion, numbers, tag)
    if not answered:
        return 0.0
    return 1.0 if value is not None and abs(value - target) < 1e-5 else format_score


def make_countdown(format_score: float = 0.1, tag: str = "answer", fixed_target: Optional[int] = None):
    """A countdown reward reading columns `nums` and `target` (or a fixed target, as in the 24 game)."""

    def countdown(
        completions: list[str], nums: Optional[list] = None, target: Optional[list] = None, **kwargs
    ) -> list[Optional[float]]:
        targets = target if fixed_target is None else [fixed_target] * len(completions)
        if nums is None or targets is None:
            raise ValueError("the countdown reward needs the columns 'nums' and 'target'")
        return [
            None if n is None or t is None else score_equation(c, n, t, format_score, tag)
            for c, n, t in zip(completions, nums, targets)
        ]

    return countdown


countdown = register_reward("countdown", correctness=True)(make_countdown())
twenty_four = register_reward("twenty_four", correctness=True)(make_countdown(fixed_target=24))


@register_reward("countdown_numbers")
def countdown_numbers(completions: list[str], nums: Optional[list] = None, **kwargs) -> list[Optional[float]]:
    """1.0 for a valid expression over exactly the given numbers, whatever its value. A rung that
    TinyZero's ladder lacks: added to `countdown` with a small weight, it makes an equation over
    the given numbers worth more than any other well-formed answer, so a small model whose groups
    all earn the format score (a constant answer such as `<answer>12</answer>`) still has a signal."""
    if nums is None:
        raise ValueError("the countdown_numbers reward needs the column 'nums'")
    return [None if n is None else float(equation_value(c, n)[1] is not None) for c, n in zip(completions, nums)]
