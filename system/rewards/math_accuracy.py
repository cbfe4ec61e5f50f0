r"""Accuracy of a math answer, by math-verify: symbolic equality, so `\frac{1}{2}`, `0.5` and `1/2` agree.

The gold comes from the `answer` column (or `solution`; either is cut to its last `\boxed{}` if it
has one), the completion's final answer from its last `<answer>` tag, else its last `\boxed{}`.
A gold that does not parse gives None (a broken data row must not hand out reward), and so does
one that math-verify reads only as text, with no expression in its parse (`unparseable_latex`,
broken LaTeX): comparing it as a string would pay for copying a string, not for mathematics.
`make_accuracy(string_fallback=True)`, registered as `accuracy_string_fallback`, compares such
golds as strings, for data sets whose golds are meant as words. A completion without an answer
gives 0.0.

Time bounds: math-verify interrupts slow parsing and comparison with `signal.alarm`, which works
only in the main thread (Ray actors run their methods there). Elsewhere its timeouts are turned
off, so two guards hold in every thread, alike, so that the score never depends on the thread:
inputs are capped in length, and expressions whose value could be astronomically large (towers
of powers, big exponents, factorials) score 0.0 before sympy tries to evaluate them.
"""

from __future__ import annotations

import re
import threading
from typing import Optional

import sympy
from math_verify import parse, verify

from system.rewards.extract import boxed_content, final_answer
from system.rewards.registry import register_reward

MAX_CHARS = 1000  # longer gold or answer texts are not parsed
MAX_EXPONENT = 1000  # |numeric exponent| and factorial argument above this are not evaluated
TIMEOUT_S = 5  # math-verify's own timeout, where it can have one (the main thread)
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_FACTORIALS = (sympy.factorial, sympy.factorial2, sympy.subfactorial)
_EXPLOSIVE = (sympy.Pow, *_FACTORIALS)


def _timeout() -> Optional[int]:
    return TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _parse(text: str) -> list:
    """math-verify's parse of a bare answer; `$...$` makes it read LaTeX like `\\sqrt{2}`."""
    if "$" not in text and "\\boxed" not in text:
        text = f"${text}$"
    return parse(text, parsing_timeout=_timeout())


def _bounded(node) -> bool:
    """False if evaluating `node` could take unbounded time or memory: a numeric exponent above
    MAX_EXPONENT or itself a power (9^{9^9}), a number raised to a power of a power
    ((10^{999})^{999}), or a factorial of more than MAX_EXPONENT or of an expression ((3!)!)."""
    if isinstance(node, sympy.Pow) and node.exp.is_number:
        exponent = abs(node.exp)
        if node.exp.has(*_EXPLOSIVE) or _exceeds(exponent, MAX_EXPONENT):
            return False
        if node.base.is_number and node.base.has(*_EXPLOSIVE) and _exceeds(exponent, 1):
            return False
    elif isinstance(node, _FACTORIALS) and not (node.args[0].is_Integer and node.args[0] <= MAX_EXPONENT):
        return False
    return all(_bounded(arg) for arg in node.args)


def _exceeds(value, limit) -> bool:
    try:
        return bool(value > limit)
    except TypeError:  # undecidable (nan, zoo): treat as too large
        return True


def _usable(text: Optional[str]) -> Optional[list]:
    """The parsed expression(s) of `text`, or None when it is absent, too long, empty or unbounded."""
    if text is None or len(text) > MAX_CHARS:
        return None
    parsed = _parse(text)
    if not parsed or not all(_bounded(p) for p in parsed if isinstance(p, sympy.Basic)):
        return None
    return parsed


def math_correct(completion: str, gold: Optional[str], string_fallback: bool = False) -> Optional[bool]:
    """Whether the completion's final answer equals the gold; None when the gold is unusable, or
    is text only and `string_fallback` is off."""
    parsed_gold = None if gold is None else _usable(boxed_content(str(gold)) or str(gold))
    if parsed_gold is None or not (string_fallback or any(isinstance(p, sympy.Basic) for p in parsed_gold)):
        return None
    parsed_answer = _usable(final_answer(completion))
    if parsed_answer is None:
        return False
    return verify(parsed_gold, parsed_answer, timeout_seconds=_timeout())


def make_accuracy(string_fallback: bool = False):
    """An accuracy reward; `string_fallback`: golds with no expression are compared as strings."""

    def accuracy(
        completions: list[str], answer: Optional[list] = None, solution: Optional[list] = None, **kwargs
    ) -> list[Optional[float]]:
        """1.0 when the final answer equals the gold (column `answer`, else `solution`), 0.0 if not."""
        golds = answer if answer is not None else solution
        if golds is None:
            raise ValueError("the accuracy reward needs an 'answer' or 'solution' column")
        correct = [math_correct(c, g, string_fallback) for c, g in zip(completions, golds)]
        return [None if ok is None else float(ok) for ok in correct]

    return accuracy


accuracy = register_reward("accuracy", correctness=True)(make_accuracy())
accuracy_string_fallback = register_reward("accuracy_string_fallback", correctness=True)(
    make_accuracy(string_fallback=True)
)


@register_reward("numeric_accuracy", correctness=True)
def numeric_accuracy(
    completions: list[str], answer: Optional[list] = None, **kwargs
) -> list[Optional[float]]:
    """1.0 when the final answer (or the right side of a final `... = x`) is a number equal to the
    numeric gold `answer`. For questions that are expressions themselves (the `arithmetic`
    generator's "7 - 1"): `accuracy` would take the question copied back as its own answer."""
    if answer is None:
        raise ValueError("the numeric_accuracy reward needs an 'answer' column")
    scores = []
    for completion, gold in zip(completions, answer):
        value = (final_answer(completion) or "").rsplit("=", 1)[-1].strip()
        if not _NUMBER.fullmatch(str(gold).strip()):
            scores.append(None)
        else:
            scores.append(float(bool(_NUMBER.fullmatch(value)) and float(value) == float(gold)))
    return scores

