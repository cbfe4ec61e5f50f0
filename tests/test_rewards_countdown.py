"""Countdown and 24-game rewards (TinyZero's scores) and the safe arithmetic evaluator behind them."""

from __future__ import annotations

import re
import time
from fractions import Fraction

import pytest

from system.rewards import get_reward
from system.rewards.countdown import make_countdown
from system.rewards.expression import ExpressionError, evaluate_expression, numbers_used


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("<think>1+2+3 = 6</think><answer>1 + 2 + 3</answer>", 1.0),
        ("<answer>(1 + 2) * 3 - 3</answer>", 0.1),  # 3 used twice
        ("<answer>1 * 2 * 3</answer>", 1.0),
        ("<answer>(1 + 2) * 3</answer>", 0.1),  # valid, but 9
        ("<answer>1 + 2</answer>", 0.1),  # does not use 3
        ("<answer>1 + 2 + 3 + 4</answer>", 0.1),  # 4 is not given
        ("<answer>6</answer>", 0.1),
        ("<answer>1 + 2 + 3 =</answer>", 0.1),
        ("<answer>1 + 2 + 3 = 6</answer>", 1.0),  # an equation: its left side is scored
        ("<answer>1 + 2 + 3 = 7</answer>", 1.0),  # a wrong claim does not undo a right left side
        ("<answer>1 + 2 * 3 = 6</answer>", 0.1),  # the left side is 7
        ("<answer>6 = 6</answer>", 0.1),
        ("<answer>1 + 2 + 3 = 6 = 6</answer>", 0.1),
        ("<answer>9**9**9</answer>", 0.1),
        ("<answer>__import__('os').system('id')</answer>", 0.1),
        ("<answer>3 / (2 - 2) + 1</answer>", 0.1),  # division by zero
        ("<answer>1 + 2</answer> no: <answer>1 + 2 + 3</answer>", 1.0),  # the last answer counts
        ("<answer>1 + 2 + 3</answer> no: <answer>1 + 2</answer>", 0.1),
        ("1 + 2 + 3", 0.0),  # no answer tag
        ("", 0.0),
    ],
)
def test_countdown(completion, expected):
    assert get_reward("countdown")([completion], nums=[[1, 2, 3]], target=[6]) == [expected]


def test_countdown_is_exact_with_fractions_and_skips_rows_without_a_task():
    countdown = get_reward("countdown")
    completions = ["<answer>8 / 3 * 3</answer>", "<answer>1</answer>", "<answer>1</answer>"]
    assert countdown(completions, nums=[[8, 3, 3], None, [1]], target=[8, 1, None]) == [1.0, None, None]
    with pytest.raises(ValueError, match="'nums' and 'target'"):
        countdown(completions, nums=[[1]] * 3)


def test_countdown_numbers_rewards_any_valid_equation_over_the_given_numbers():
    completions = ["<answer>1 + 2 + 3</answer>", "<answer>(1 + 2) * 3 = 9</answer>", "<answer>1 + 2</answer>",
                   "<answer>12</answer>", "<answer>1 + 2 + 3 + 3</answer>", "1 + 2 + 3", "<answer>1 + 2 + 3</answer>"]
    nums = [[1, 2, 3]] * 6 + [None]
    assert get_reward("countdown_numbers")(completions, nums=nums) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, None]


def test_countdown_parameters():
    strict = make_countdown(format_score=0.0, tag="eq")
    assert strict(["<eq>1 + 2 + 3</eq>", "<eq>1 + 2</eq>", "<answer>1 + 2 + 3</answer>"],
                  nums=[[1, 2, 3]] * 3, target=[6] * 3) == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "answer, expected",
    [("2 * (3 + 5) + 8", 1.0), ("(5 + 5) * 3 - 2", 0.1), ("2 * 3 * 5 - 8", 0.1), ("8 × (5 − 2) ÷ 1", 0.1)],
)
def test_twenty_four(answer, expected):
    scores = get_reward("twenty_four")([f"<answer>{answer}</answer>"], nums=[[2, 3, 5, 8]], target=[99])
    assert scores == [expected]  # the target column is ignored: always 24


@pytest.mark.parametrize(
    "text, value, numbers",
    [
        ("2 * (3 + 5) + 8", 24, [2, 3, 5, 8]),
        ("(2 + 3) / (8 * 5)", Fraction(1, 8), [2, 3, 8, 5]),
        ("-5 + 3", -2, [5, 3]),
        ("8 / 3 * 3", 8, [8, 3, 3]),
        ("(13 - 7) * (2 + 2)", 24, [13, 7, 2, 2]),
        ("2 × 3 ÷ 4 − 1", Fraction(1, 2), [2, 3, 4, 1]),
        (" 1 +\n 2 ", 3, [1, 2]),
    ],
)
def test_evaluate_expression(text, value, numbers):
    assert evaluate_expression(text) == value
    assert numbers_used(text) == numbers


HOSTILE = [
    ("9**9**9", "** is not allowed"),
    ("2 ** 10", "** is not allowed"),
    ("__import__('os')", "'_' is not allowed"),
    ("(1).__class__", "'.' is not allowed"),
    ("'a'*10**9", "\"'\" is not allowed"),
    ("x + 1", "'x' is not allowed"),
    ("[1, 2]", "'[' is not allowed"),
    ("1e9", "'e' is not allowed"),
    ("8 // 3", "// is not allowed"),
    ("+5", "unary + is not allowed"),
    ("1 + 1_000", "'_' is not allowed"),
    ("99999999999", "too large"),
    ("9" * 250, "too large"),
    ("1+" * 5000 + "1", "longer than 300 characters"),
    ("(" * 100 + "1" + ")" * 100, "nested more than 32 levels"),
    ("1 / (2 - 2)", "divides by zero"),
    ("2 + 3 +", "incomplete or malformed"),
    ("(1 + 2", "incomplete or malformed"),
    ("", "empty"),
]


@pytest.mark.parametrize("text, message", HOSTILE)
def test_hostile_expressions_are_rejected_fast(text, message):
    start = time.perf_counter()
    with pytest.raises(ExpressionError, match=re.escape(message)):
        evaluate_expression(text)
    assert time.perf_counter() - start < 0.05
    assert issubclass(ExpressionError, ValueError)
