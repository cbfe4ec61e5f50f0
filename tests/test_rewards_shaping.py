"""Format and shaping rewards, against values worked out by hand."""

from __future__ import annotations

import pytest

from system.rewards import get_reward
from system.rewards.format import make_format, make_tag_count
from system.rewards.shaping import make_cosine, make_repetition_penalty, make_soft_overlong


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("<think>\nlet me see\n</think>\n<answer>\n42\n</answer>", 1.0),
        ("<think>a</think><answer>42</answer>", 1.0),
        ("thinking, opened by the prompt</think> <answer>42</answer>\n", 1.0),
        ("<answer>42</answer>", 0.0),  # no thinking
        ("<think>a</think>", 0.0),  # no answer
        ("<answer>42</answer><think>a</think>", 0.0),  # wrong order
        ("<think>a</think><answer>42</answer> and more", 0.0),  # text after the answer
        ("<think>a</think><answer>1</answer><answer>2</answer>", 0.0),  # two answers
        ("<think>a</think></think><answer>1</answer>", 0.0),
        ("", 0.0),
    ],
)
def test_format(completion, expected):
    assert get_reward("format")([completion]) == [expected]


def test_format_and_tag_count_with_other_tags():
    custom = make_format(think="reasoning", answer="final")
    completions = ["<reasoning>a</reasoning><final>1</final>", "<think>a</think><answer>1</answer>"]
    assert custom(completions) == [1.0, 0.0]
    assert make_tag_count("reasoning", "final")(["<reasoning>a</reasoning><final>1"]) == [0.75]


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("<think>a</think><answer>1</answer>", 1.0),
        ("a</think><answer>1</answer>", 0.75),
        ("<think>a</think><answer>1</answer><answer>2</answer>", 0.5),  # answer tags twice: no credit
        ("no tags", 0.0),
    ],
)
def test_tag_count(completion, expected):
    assert get_reward("tag_count")([completion]) == [expected]


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("Step 1: add. Step 2: carry. Step 3: done.", 1.0),
        ("First, add.\nNext, carry.", 2 / 3),
        ("1. add\n2. carry\n3. check\n4. done", 1.0),
        ("just the answer", 0.0),
    ],
)
def test_reasoning_steps(completion, expected):
    assert get_reward("reasoning_steps")([completion]) == [pytest.approx(expected)]


def test_cosine_scales_by_length_and_correctness():
    completions = ["<answer>4</answer>"] * 4 + ["<answer>5</answer>"] * 3 + ["<answer>4</answer>"]
    tokens = [0, 500, 1000, 3000, 0, 500, 1000, 10]
    golds = ["4"] * 7 + [""]
    scores = get_reward("cosine")(completions, answer=golds, completion_tokens=tokens)
    # correct: 0.5 + 0.25 * (1 + cos(pi * len / 1000)); wrong: -0.5 - 0.25 * (1 + cos(...))
    assert scores[:7] == pytest.approx([1.0, 0.75, 0.5, 0.5, -1.0, -0.75, -0.5])
    assert scores[7] is None  # gold does not parse
    by_chars = make_cosine(max_length=36)(["<answer>4</answer>" * 2], answer=["4"])  # 36 characters
    assert by_chars == [pytest.approx(0.5)]


def test_cosine_with_another_correctness_reward():
    cosine = make_cosine(correctness="countdown", max_length=100)
    scores = cosine(["<answer>1+2+3</answer>", "<answer>1+2</answer>"], nums=[[1, 2, 3]] * 2, target=[6, 6],
                    completion_tokens=[50, 50])
    assert scores == pytest.approx([0.75, -0.75])


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("a b c a b c", -0.25),  # 4 trigrams, 3 distinct
        ("A a a a", -0.5),  # lower-cased: 2 trigrams, 1 distinct
        ("one two three four", 0.0),
        ("too short", 0.0),
        ("", 0.0),
    ],
)
def test_repetition_penalty(completion, expected):
    assert get_reward("repetition_penalty")([completion]) == [pytest.approx(expected)]


def test_repetition_penalty_parameters():
    assert make_repetition_penalty(ngram_size=1, max_penalty=-2.0)(["a a b b"]) == [pytest.approx(-1.0)]
    with pytest.raises(ValueError):
        make_repetition_penalty(max_penalty=0.5)


@pytest.mark.parametrize(
    "completion, expected",
    [
        # jieba: 我 / 喜欢 / 吃 / 苹果, twice: 7 bigrams, 4 distinct -> -(1 - 4/7)
        ("我喜欢吃苹果我喜欢吃苹果", -3 / 7),
        ("我喜欢吃苹果", 0.0),
        # spaces are not words: 我 喜欢 python 我 喜欢 python -> 5 bigrams, 3 distinct
        ("我 喜欢 Python 我 喜欢 python", -0.4),
        ("", 0.0),
    ],
)
def test_repetition_penalty_segments_chinese_words(completion, expected):
    assert make_repetition_penalty(ngram_size=2, language="zh")([completion]) == [pytest.approx(expected)]


def test_repetition_penalty_languages():
    text = "我喜欢吃苹果我喜欢吃苹果"
    assert make_repetition_penalty(ngram_size=2)([text]) == [0.0]  # "en": one space-free "word", no bigram
    # trigrams: 14, 4 distinct
    assert get_reward("repetition_penalty_zh")([text * 2]) == [pytest.approx(-(1 - 4 / 14))]
    with pytest.raises(ValueError, match="language must be one of"):
        make_repetition_penalty(language="fr")


def test_length_is_relative_within_each_group():
    completions = ["<answer>1</answer>", "<answer>9</answer>", "<answer>1</answer>",  # group "1"
                   "<answer>2</answer>", "<answer>2</answer>",  # group "2": equal lengths
                   "<answer>3</answer>"]  # gold does not parse
    scores = get_reward("length")(
        completions, answer=["1", "1", "1", "2", "2", ""], completion_tokens=[10, 20, 30, 5, 5, 7]
    )
    # group "1": lambda = 0.5 - (len - 10) / 20 -> 0.5, 0.0, -0.5; the wrong one gets min(0, 0.0)
    assert scores == [0.5, 0.0, -0.5, 0.0, 0.0, None]


def test_soft_overlong():
    punish = make_soft_overlong(max_length=100, cache=20)
    assert punish(["x"] * 5, completion_tokens=[50, 80, 90, 100, 101]) == [0.0, 0.0, -0.5, -1.0, -1.0]
    by_chars = get_reward("soft_overlong")(["x" * 3072, "x" * 3584, "x" * 5000])  # default 4096, cache 1024
    assert by_chars == [0.0, -0.5, -1.0]
    with pytest.raises(ValueError):
        make_soft_overlong(max_length=10, cache=20)
