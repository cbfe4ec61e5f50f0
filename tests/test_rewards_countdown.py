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
                   "<answer>12</answer>", "<answer>1 + 2 + 3 + 3</answer>", "1 + 2 + 3",
                   "<answer>1 + 2 + 3</answer>"]
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


TRACE = ("<think>\nGoal 40 with 7, 19, 3.\n"
         "40 - 3 = 37 from 7, 19: 7 + 19 = 26, 19 - 7 = 12, 7 * 19 = 133. No.\n"
         "40 - 19 = 21 from 7, 3: 7 + 3 = 10, 7 - 3 = 4, 7 * 3 = 21. Yes.\nCheck: 7 * 3 = 21, 21 + 19 = 40.\n"
         "</think>\n<answer> 7 * 3 + 19 </answer>")


def test_arithmetic_steps_reads_every_step_of_a_trace():
    from system.rewards.steps import shown_steps

    assert len(shown_steps(TRACE)) == 10
    assert shown_steps("7 * 3 + 19 = 40, 8 / 2 = 4.5 - 1") == [("8", "/", "2", "4.5")]  # chains are not steps


@pytest.mark.parametrize(
    "completion, expected",
    [
        (TRACE, 1.0),
        (TRACE.replace("7 * 19 = 133", "7 * 19 = 123"), 0.0),  # a false step in a failed try counts too
        (TRACE.replace("40 - 19 = 21", "40 - 19 = 20"), 0.0),  # a sub-goal bent to what the pair makes
        (TRACE.split("</think>")[0], 0.0),  # no closed answer
        ("<answer> 7 * 3 + 19 </answer>", 0.0),  # no step shown
        ("1 + 1 = 2, 2 + 2 = 4, 3 + 3 = 6, 5 - 7 = -2, 7 / 2 = 3.5, 6 × 2 = 12 <answer>1</answer>", 1.0),
        ("1 + 1 = 2, " * 50 + "2 * 2 = 5 <answer>1</answer>", 0.0),  # padding cannot outvote a false step
        ("5 / 0 = 0 <answer>1</answer>", 0.0),
        ("9" * 5000 + " * " + "9" * 5000 + " = 1 <answer>1</answer>", 0.0),  # false without the arithmetic
        ("1 + 2 = 3 <answer>1 + 2 = 4</answer>", 1.0),  # the answer is the correctness reward's to judge
    ],
)
def test_arithmetic_steps_is_all_or_nothing(completion, expected):
    assert get_reward("arithmetic_steps")([completion]) == [expected]
