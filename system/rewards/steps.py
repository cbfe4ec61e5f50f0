"""Arithmetic steps: whether the `a op b = c` steps a reply shows before its answer all hold.

A process reward for traces in the program teachers' layout (`40 - 19 = 21 from 7, 3: 7 + 3 = 10,
7 * 3 = 21. Yes.`). A small model's Countdown replies fail mostly on a false step of their own
(docs/r1-recipe.md: `88 - 8 = 86`, or a sub-goal bent to what the pair can make), and an outcome
reward alone gives a wrong answer with true steps and one with false steps the same score. This
reward tells them apart, so a group whose answers are all wrong still ranks its replies.

All or nothing, so that it cannot be farmed: 1.0 when the reply closes an `<answer>`, shows at least
one step before it, and every step holds; else 0.0. Padding with true steps (`1 + 1 = 2`) buys
nothing once one step is false. A reply can still pass with a single true line and a wrong answer:
this is a shaping term next to a correctness reward, with a smaller weight, never on its own.

A step is a clause (text between `,` `:` `;`, a line break or a full stop) that starts with
`a op b = c`, numbers whole or decimal: a chained `7 * 3 + 19 = 40` is not read as the false step
`3 + 19 = 40`. Numbers are parsed as exact fractions, never evaluated as code; a number longer than
MAX_DIGITS characters makes its step false without any arithmetic.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Optional

from system.rewards.registry import register_reward

MAX_DIGITS = 30
_CLAUSES = re.compile(r"[,:;\n]|\.(?:\s|$)")
_NUMBER = r"(\d+(?:\.\d+)?)"
_STEP = re.compile(rf"\s*{_NUMBER}\s*([-+*/×÷])\s*{_NUMBER}\s*=\s*(-?\d+(?:\.\d+)?)")
_OPS = {"+": Fraction.__add__, "-": Fraction.__sub__, "*": Fraction.__mul__, "×": Fraction.__mul__,
        "/": Fraction.__truediv__, "÷": Fraction.__truediv__}


def shown_steps(text: str) -> list[tuple[str, str, str, str]]:
    """The (a, op, b, c) of every clause of `text` that starts with `a op b = c`."""
    return [m.groups() for clause in _CLAUSES.split(text) if (m := _STEP.match(clause))]


def step_holds(a: str, op: str, b: str, c: str) -> bool:
    if max(len(a), len(b), len(c)) > MAX_DIGITS:
        return False
    left, right = Fraction(a), Fraction(b)
    if op in "/÷" and right == 0:
        return False
    return _OPS[op](left, right) == Fraction(c)


def score_steps(completion: str) -> float:
    end = completion.rfind("</answer>")
    start = completion.rfind("<answer>", 0, end)
    if end < 0 or start < 0:
        return 0.0
    steps = shown_steps(completion[:start])
    return float(bool(steps) and all(step_holds(*step) for step in steps))


@register_reward("arithmetic_steps")
def arithmetic_steps(completions: list[str], **kwargs) -> list[Optional[float]]:
    """1.0 when every `a op b = c` step shown before the closed answer holds (at least one), else 0.0."""
    return [score_steps(c) for c in completions]
