"""The math accuracy reward (math-verify), in the main thread and in worker threads alike."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from system.rewards import get_reward
from system.rewards.extract import boxed_content, final_answer, tag_content
from system.rewards.math_accuracy import make_accuracy

# (completion, gold, expected score)
CASES = [
    ("<think>half</think><answer>\\frac{1}{2}</answer>", "0.5", 1.0),
    ("<answer>0.5</answer>", "\\frac{1}{2}", 1.0),
    ("so the answer is \\boxed{1/2}.", "\\frac12", 1.0),
    ("<answer>x^2+2x+1</answer>", "(x+1)^2", 1.0),
    ("<answer>(x^2+1)^2</answer>", "x^4+2x^2+1", 1.0),
    ("<answer>3!</answer>", "6", 1.0),
    ("<answer>\\sqrt{2}</answer>", "\\sqrt 2", 1.0),
    ("<answer>2^{10}</answer>", "1024", 1.0),
    ("<answer>$\\pi$</answer>", "\\pi", 1.0),
    ("<answer>3</answer> no, wait: <answer>4</answer>", "4", 1.0),  # the last answer counts
    ("<answer>3</answer> no, wait: <answer>4</answer>", "3", 0.0),
    ("\\boxed{3} hmm, \\boxed{5}", "5", 1.0),
    ("<answer>7</answer> and \\boxed{8}", "7", 1.0),  # the tag wins over a box
    ("<answer>5</answer>", "6", 0.0),
    ("I think it is 4.", "4", 0.0),  # no tagged or boxed answer
    ("<answer></answer>", "4", 0.0),
    ("The final answer is $\\boxed{10}$.", "So we get $x = 10$, i.e. \\boxed{10}", 1.0),  # a solution as gold
    # a gold that does not parse: unscorable, never 1.0
    ("<answer>4</answer>", "", None),
    ("<answer>4</answer>", "\\boxed{}", None),
    ("<answer>4</answer>", None, None),
    ("<answer>4</answer>", "1" * 2000, None),
    # a gold math-verify reads only as text: no expression to compare, so no string match either
    ("\\boxed{unparseable_latex}", "unparseable_latex", None),
    ("<answer>unparseable_latex</answer>", "\\boxed{unparseable_latex}", None),
    # a letter or a \text{} word is an expression (a symbol): still scored
    ("<answer>B</answer>", "B", 1.0),
    ("<answer>C</answer>", "B", 0.0),
    ("<answer>\\text{Tuesday}</answer>", "\\text{Tuesday}", 1.0),
    # hedged answers: several candidates, or a range that holds the gold, are not the gold
    ("<answer>1, 2, 3, 4, 5</answer>", "3", 0.0),
    ("<answer>3 \\text{ or } 4</answer>", "3", 0.0),
    ("<answer>[0, 10]</answer>", "3", 0.0),
    ("<answer>3 \\pm 1</answer>", "3", 0.0),
    # hostile answers: 0.0 at once, whatever the thread
    ("<answer>9^{9^{9}}</answer>", "3", 0.0),
    ("<answer>2^{100000}</answer>", "3", 0.0),
    ("<answer>(10^{999})^{999}</answer>", "3", 0.0),
    ("<answer>99999!</answer>", "3", 0.0),
    ("<answer>(3!)!</answer>", "720", 0.0),
    ("<answer>" + "1+" * 600 + "1</answer>", "1201", 0.0),
]

accuracy = get_reward("accuracy")


def score_each(cases):
    return [accuracy([completion], answer=[gold])[0] for completion, gold, _ in cases]


def test_accuracy_in_the_main_thread():
    assert threading.current_thread() is threading.main_thread()
    assert score_each(CASES) == [expected for _, _, expected in CASES]


def test_accuracy_in_threads_matches_and_is_bounded():
    start = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        scores = list(pool.map(lambda case: score_each([case])[0], CASES))
    assert scores == [expected for _, _, expected in CASES]
    assert time.monotonic() - start < 20


def test_batch_columns_and_solution_column():
    completions = ["<answer>2</answer>", "<answer>3</answer>"]
    assert accuracy(completions, answer=["2", "2"], problem=["1+1?", "1+1?"]) == [1.0, 0.0]
    assert accuracy(completions, solution=["\\boxed{3}", "\\boxed{3}"]) == [0.0, 1.0]
    with pytest.raises(ValueError, match="'answer' or 'solution'"):
        accuracy(completions, target=[1, 2])


@pytest.mark.parametrize(
    "text, tag, boxed, final",
    [
        ("<answer> 1 </answer><answer>2</answer>", "2", None, "2"),
        ("\\boxed{\\frac{1}{2}} then \\boxed{x^{2}}", None, "x^{2}", "x^{2}"),
        ("\\boxed{unclosed", None, None, None),
        ("</answer> <answer>", None, None, None),
        ("<answer>a</answer> \\boxed{b}", "a", "b", "a"),
    ],
)
def test_answer_extraction(text, tag, boxed, final):
    assert (tag_content(text), boxed_content(text), final_answer(text)) == (tag, boxed, final)


def test_numeric_accuracy_wants_the_value_not_the_question_copied_back():
    numeric, accuracy = get_reward("numeric_accuracy"), get_reward("accuracy")
    completions = [f"<answer>{a}</answer>" for a in ("7 - 1", "6", "7 - 1 = 6", "5")]
    assert accuracy(completions, answer=["6"] * 4) == [1.0, 1.0, 1.0, 0.0]  # math-verify evaluates "7 - 1"
    assert numeric(completions, answer=["6"] * 4) == [0.0, 1.0, 1.0, 0.0]
    assert numeric(["<answer>-3</answer>", "<answer>x</answer>"], answer=["-3", "1/2"]) == [1.0, None]


def test_string_fallback_compares_text_golds_only_when_asked():
    fallback = get_reward("accuracy_string_fallback")
    completions = ["\\boxed{unparseable_latex}", "\\boxed{other_text}", "<answer>0.5</answer>"]
    golds = ["unparseable_latex", "unparseable_latex", "\\frac{1}{2}"]
    assert accuracy(completions, answer=golds) == [None, None, 1.0]
    assert fallback(completions, answer=golds) == [1.0, 0.0, 1.0]
    assert fallback(["<answer>4</answer>"], answer=[""]) == [None]  # an empty gold is never text
    assert make_accuracy(string_fallback=True)(completions, answer=golds) == [1.0, 0.0, 1.0]
