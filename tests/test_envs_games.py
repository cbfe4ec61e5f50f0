"""The shipped games: 24-point feedback, countdown tasks, frozen-lake transitions."""

from __future__ import annotations

import pytest

from system.envs import check_env, make_env
from system.envs.frozen_lake import has_path
from system.envs.twenty_four import solve
from system.rewards.expression import evaluate_expression, numbers_used


def twenty_four(numbers, **params):
    env = make_env("twenty_four", **params)
    env.reset(0)
    env.numbers = numbers  # a fixed task, so the expected messages can be written out
    return env


@pytest.mark.parametrize(
    "answer, message, reward",
    [
        ("2 * (3 + 5) + 8", "Correct: 2 * (3 + 5) + 8 = 24.", 1.0),
        ("(5 + 5) * 3 - 2", "(5 + 5) * 3 - 2 uses 5 twice and does not use 8.", -0.0125),
        ("2 * 3 * 8", "2 * 3 * 8 does not use 5.", -0.0125),
        ("2 * (3 + 5) + 8 + 1", "2 * (3 + 5) + 8 + 1 uses 1 (not one of the numbers).", -0.01),
        ("(13 - 7) * (1 + 1)", "uses 1 (not one of the numbers), uses 7 (not one of the numbers), uses 13",
         -0.05),
        ("2 * 3 * 5 - 8", "2 * 3 * 5 - 8 evaluates to 22, not 24.", 0.0),
        ("(2 + 3) / (8 * 5)", "(2 + 3) / (8 * 5) evaluates to 1/8, not 24.", 0.0),
        ("2 + 3 + 5 +", "2 + 3 + 5 + is not a valid expression", -0.1),
        ("__import__('os')", "is not a valid expression", -0.1),
    ],
)
def test_twenty_four_feedback(answer, message, reward):
    env = twenty_four([2, 3, 5, 8])
    observation, got_reward, done, info = env.step(f"Let me see. <answer>{answer}</answer>")
    assert message in observation
    assert got_reward == pytest.approx(reward)
    assert done == info["success"] == (reward == 1.0)
    assert info["invalid_action"] == (reward < 0)
    if not done:
        assert observation.endswith("Try again (3 turns left).")


def test_twenty_four_grades_wrong_answers_by_how_close_they_come():
    """no move < not an expression < wrong numbers (by the share right) < wrong value < solved;
    each grade a config field."""
    grades = dict(invalid_penalty=-1.0, wrong_numbers_penalty=-0.5, wrong_value_penalty=-0.2)
    answers = ["2 +", "7 * 9", "2 * 3 * 7 * 9", "2 * 3", "2 * 3 * 5 * 8 * 8", "2 * 3 * 5 - 8",
               "2 * (3 + 5) + 8"]
    replies = ["no tags"] + [f"<answer>{a}</answer>" for a in answers]
    rewards = [twenty_four([2, 3, 5, 8], max_turns=5, **grades).step(reply)[1] for reply in replies]
    assert rewards == pytest.approx([-1.0, -1.0, -0.5, -0.35, -0.35, -0.26, -0.2, 1.0])
    assert make_env("twenty_four", **grades).reward_range == (-1.0, 1.0)
    check_env(lambda: make_env("twenty_four", **grades))
    with pytest.raises(ValueError, match="must stay below 1"):
        make_env("countdown", wrong_value_penalty=1.0)


def test_twenty_four_retries_are_discounted_and_limited():
    env = twenty_four([2, 3, 5, 8], max_turns=3, turn_discount=0.5)
    assert env.step("<answer>2 * 3 * 5 - 8</answer>")[1:3] == (0.0, False)
    observation, reward, done, info = env.step("<answer>2 * (3 + 5) + 8</answer>")
    assert (reward, done, info["success"], info["turn"]) == (0.5, True, True, 2)

    env = twenty_four([2, 3, 5, 8], max_turns=2)
    env.step("<answer>2 * 3 * 5 - 8</answer>")
    observation, reward, done, info = env.step("<answer>2 * 3 * 5 - 8</answer>")
    assert done and info["truncated"] and not info["success"]
    assert "Try again" not in observation


def test_solver():
    for numbers in ([3, 3, 8, 8], [1, 5, 5, 5], [1, 2, 3, 4]):
        assert evaluate_expression(solve(numbers)) == 24
        assert sorted(numbers_used(solve(numbers))) == sorted(numbers)
    assert solve([1, 1, 1, 1]) is None
    assert solve([3, 4], target=7) == "3 + 4"


@pytest.mark.parametrize("name", ["twenty_four", "countdown"])
def test_every_task_is_solvable_by_its_stored_solution(name):
    env = make_env(name)
    for seed in range(30):
        observation = env.reset(seed)
        assert " ".join(map(str, env.numbers)) in observation and str(env.target) in observation
        assert evaluate_expression(env.solution) == env.target
        assert sorted(numbers_used(env.solution)) == sorted(env.numbers)
        assert env.step(f"<answer>{env.solution}</answer>")[1] == 1.0


def test_countdown_params_shape_the_task_and_one_wrong_answer_ends_it():
    env = make_env("countdown", num_numbers=5, max_number=9, min_target=50, max_target=60)
    for seed in range(10):
        env.reset(seed)
        assert len(env.numbers) == 5 and max(env.numbers) <= 9 and 50 <= env.target <= 60
    observation, reward, done, info = env.step("<answer>1 + 1</answer>")
    assert done and not info["success"] and "Try again" not in observation


FIXED = "SFFF/FHFH/FFFH/HFFG"


def lake(**params):
    env = make_env("frozen_lake", map=FIXED, **params)
    first = env.reset(0)
    return env, first


def moves(env, *directions):
    return [env.step(f"<answer>{d}</answer>") for d in directions]


def test_frozen_lake_renders_the_map():
    env, first = lake()
    assert first == "P _ _ _\n_ O _ O\n_ _ _ O\nO _ _ G"


def test_frozen_lake_walks_to_the_goal():
    env, _ = lake()
    steps = moves(env, "down", "Down", " RIGHT ", "right", "down")
    assert [s[2] for s in steps] == [False] * 5
    assert steps[2][0] == "You moved right.\n_ _ _ _\n_ O _ O\n_ P _ O\nO _ _ G"
    observation, reward, done, info = env.step("<answer>right</answer>")
    assert observation == "You moved right and reached the goal!\n_ _ _ _\n_ O _ O\n_ _ _ O\nO _ _ √"
    assert (reward, done, info["success"], info["turn"]) == (1.0, True, True, 6)


def test_frozen_lake_holes_edges_and_bad_moves():
    env, _ = lake()
    observation, reward, done, _ = env.step("<answer>left</answer>")
    assert observation.startswith("You cannot move left: that is the edge.\nP _ _ _") and not done
    observation, reward, done, info = env.step("<answer>jump</answer>")
    assert (reward, done, info["invalid_action"]) == (-0.1, False, True)
    assert "'jump' is not a move" in observation
    observation, reward, done, info = moves(env, "right", "down")[-1]
    assert observation == "You moved down and fell into a hole.\n_ _ _ _\n_ X _ O\n_ _ _ O\nO _ _ G"
    assert (reward, done, info["success"]) == (0.0, True, False)


def test_frozen_lake_runs_out_of_turns():
    env, _ = lake(max_turns=3)
    steps = moves(env, "left", "left", "left")
    assert [s[2] for s in steps] == [False, False, True] and steps[-1][3]["truncated"]


def test_slippery_lake_slips_the_same_way_for_the_same_seed():
    def walk(seed):
        env = make_env("frozen_lake", slippery=True, max_turns=20)
        env.reset(seed)
        return [env.step("<answer>right</answer>") for _ in range(3) if not env.done]

    assert walk(3) == walk(3)
    assert any("you slipped" in step[0] for seed in range(10) for step in walk(seed))


def test_random_lakes_have_a_path_and_differ_by_seed():
    env = make_env("frozen_lake", size=6, frozen_prob=0.6)
    maps = set()
    for seed in range(20):
        env.reset(seed)
        assert len(env.rows) == 6 and has_path(env.rows)
        maps.add(tuple(env.rows))
    assert len(maps) == 20


@pytest.mark.parametrize("bad", ["SFF/FG", "SFFF/HHHH/FFFG", "SXFG", "FFFG"])
def test_frozen_lake_rejects_bad_maps(bad):
    with pytest.raises(ValueError, match="map"):
        make_env("frozen_lake", map=bad)
