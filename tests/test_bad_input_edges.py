"""Bad input at the edges of a run (docs/reliability.md, "Bad input at the edges"): a reward that returns
what is no score, a data file with malformed rows, a call to the agents' endpoint that asks too much, and a
config that asks for more devices than the cluster has."""

import math
import re

import numpy as np
import pytest

from system.config.grpo import RewardConfig
from system.rewards import RewardError, RewardScorer
from system.rewards.scorer import run_reward

# A reward that returns what is no score


def returning(value):
    """A reward that scores the second completion `value` and the others 1.0."""
    return lambda completions, **columns: [value if i == 1 else 1.0 for i in range(len(completions))]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "1.0", [1.0], {"score": 1}, object()])
def test_a_score_that_is_no_finite_number_is_an_error_naming_the_reward_the_value_and_the_sample(value):
    columns = {"answer": ["1", "2", "3"]}
    with pytest.raises(RewardError) as error:
        run_reward("odd", returning(value), ["a", "b", "c"], columns, first=6)
    message = str(error.value)
    assert f"reward 'odd' returned {repr(value)[:40]}" in message
    assert "for sample 7 of the batch, columns {answer: '2'}, completion 'b'" in message
    assert "a score is a finite number, or None when the sample cannot be scored" in message


def test_none_and_any_finite_number_are_scores():
    scores = run_reward("fine", lambda completions, **_: [None, np.float32(0.5), 2, True], list("abcd"), {})
    assert scores == [None, 0.5, 2.0, 1.0] and all(type(s) in (float, type(None)) for s in scores)


@pytest.mark.parametrize("returned, said", [(0.5, "a float (0.5)"), ([1.0], "1 scores ([1.0])"),
                                            ("11", "a str (11)")])
def test_a_reward_that_returns_no_list_of_one_score_per_completion_is_an_error(returned, said):
    with pytest.raises(RewardError, match=f"reward 'odd' returned {re.escape(said)} for 2 completions "
                                          r"\(samples 0-1\): a reward returns a list of one score per completion"):
        run_reward("odd", lambda completions, **_: returned, ["a", "b"], {})


def test_the_driver_scorer_never_lets_a_nan_reach_the_combined_reward():
    scorer = RewardScorer(RewardConfig(functions={"tests.test_bad_input_edges:nan_reward": 1.0}, num_workers=0))
    with pytest.raises(RewardError, match="reward 'tests.test_bad_input_edges:nan_reward' returned nan"):
        scorer.score(["a", "b"], {"answer": ["1", "2"]})


def nan_reward(completions, **columns):
    return [math.nan] * len(completions)
