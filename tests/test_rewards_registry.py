"""The reward registry, `module:function` lookup, the two ways of combining rewards, and the scorer that
gives a batch's scores and combined reward together (in the driver, or in reward workers)."""

from __future__ import annotations

import pytest

from actors.reward import RewardPool
from system.config.grpo import RewardConfig
from system.rewards import RewardScorer, available_rewards, combine_rewards, get_reward, register_reward

SHIPPED = [
    "accuracy", "accuracy_string_fallback", "binary_code", "code", "code_format", "cosine", "countdown",
    "format", "length", "reasoning_steps", "repetition_penalty", "soft_overlong", "tag_count", "twenty_four",
]


USER_MODULE = """
def shout(completions, **kwargs):
    return [1.0 if c.isupper() else 0.0 for c in completions]

NOT_A_FUNCTION = [1, 2]
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's own rewards module, importable as `my_rewards`."""
    (tmp_path / "my_rewards.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_every_shipped_reward_is_registered_and_takes_unknown_columns():
    assert set(SHIPPED) <= set(available_rewards())
    columns = {"answer": ["1"], "nums": [[1]], "target": [1], "test": [None], "entry_point": [None]}
    columns["unknown_extra"] = [0]
    for name in SHIPPED:
        scores = get_reward(name)(["<think>x</think><answer>1</answer>"], **columns)
        assert len(scores) == 1 and (scores[0] is None or isinstance(scores[0], float)), name


def test_module_function_paths_are_imported(user_module):
    assert get_reward("my_rewards:shout")(["HI", "hi"]) == [1.0, 0.0]
    assert get_reward("system.rewards.countdown:twenty_four") is get_reward("twenty_four")


@pytest.mark.parametrize(
    "name, message",
    [
        ("acuracy", "did you mean 'accuracy'"),
        ("tag_cont", "did you mean 'tag_count'"),
        ("no_such_pkg.mod:fn", "cannot import module 'no_such_pkg.mod'"),
        ("my_rewards:whisper", "has no attribute 'whisper'"),
        ("my_rewards:NOT_A_FUNCTION", "is a list, not a function"),
    ],
)
def test_unknown_rewards_are_clear_errors(user_module, name, message):
    with pytest.raises(ValueError, match=message):
        get_reward(name)


def test_register_reward_refuses_a_second_function_under_a_taken_name():
    @register_reward("test_only_constant")
    def constant(completions, **kwargs):
        return [0.5] * len(completions)

    assert get_reward("test_only_constant") is constant
    with pytest.raises(ValueError, match="already taken"):
        register_reward("test_only_constant")(lambda completions, **kwargs: [1.0] * len(completions))


SCORES = {
    "format": [1.0, 0.0, 1.0, 1.0],
    "accuracy": [1.0, 1.0, 0.0, None],
    "length": [0.5, -0.5, 0.0, 0.25],
}


def test_sum_is_weighted_and_none_propagates():
    combined = combine_rewards(SCORES, {"format": 0.5, "accuracy": 2.0}, mode="sum")
    assert combined == [2.5, 2.0, 0.5, None]
    combined = combine_rewards(SCORES, {"format": 1.0, "length": 2.0})  # accuracy unused: no None
    assert combined == [2.0, -1.0, 1.0, 1.5]


def test_gate_counts_the_rest_only_when_the_format_is_right():
    combined = combine_rewards(SCORES, {"format": 0.5, "accuracy": 1.0, "length": 1.0}, mode="gate")
    # sample 1: gated out though accurate (format hacking does not pay, and neither does skipping it)
    assert combined == [1.5, 0.0, 0.0, None]
    assert combine_rewards(SCORES, {"accuracy": 1.0}, mode="gate", gate="format") == [1.0, 0.0, 0.0, None]


def test_combine_errors():
    with pytest.raises(ValueError, match="mode"):
        combine_rewards(SCORES, {"format": 1.0}, mode="product")
    with pytest.raises(KeyError, match="cosine"):
        combine_rewards(SCORES, {"cosine": 1.0})
    with pytest.raises(ValueError, match="different numbers"):
        combine_rewards({"a": [1.0], "b": [1.0, 0.0]}, {"a": 1.0, "b": 1.0})


def half_each(completions, **_):
    return [0.5] * len(completions)


GATED_HALF = "tests.test_rewards_registry:half_each"
GATED = RewardConfig(functions={"format": 1.0, GATED_HALF: 4.0}, mode="gate", num_workers=0)
REPLIES = ["<think>a</think><answer>1</answer>", "no tags", "<think>b</think><answer>2</answer>", ""]


def test_the_scorer_gives_each_function_s_scores_and_their_combination():
    scored = RewardScorer(GATED).score(REPLIES, {"answer": ["1", "2", "3", "4"]}, group_size=2)
    assert scored.parts == {"format": [1.0, 0.0, 1.0, 0.0], GATED_HALF: [0.5] * 4}
    assert scored.total == [2.0, 0.0, 2.0, 0.0]  # half_each * 4, where the format is right


def test_a_pool_without_workers_scores_in_this_process():
    pool = RewardPool(GATED, [])
    assert pool.workers == [] and pool.score(REPLIES, {}, 2) == RewardScorer(GATED).score(REPLIES, {})


@pytest.mark.e2e
def test_reward_workers_give_what_the_driver_would(ray_job):
    """Two workers, each a group of the batch: the same scores and combined rewards as in-process."""
    workers = RewardConfig(functions=GATED.functions, mode="gate", num_workers=2)
    pool = RewardPool(workers, [{"num_cpus": 0.1}] * 2)
    try:
        assert pool.score(REPLIES, {}, group_size=2) == RewardScorer(GATED).score(REPLIES, {})
    finally:
        for worker in pool.workers:
            ray_job.kill(worker)
