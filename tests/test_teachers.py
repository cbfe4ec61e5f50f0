"""Program teachers (system/teachers/): every trace they write is right, readable arithmetic, short,
and reproducible from its seed; a task they cannot solve gives None, never a wrong trace."""

import random
from types import SimpleNamespace

import pytest

from system.data.generators import generate
from system.rewards.countdown import score_equation
from system.rewards.steps import score_steps
from system.teachers import TEACHERS
from system.teachers.countdown import countdown_trace, solvable
from system.teachers.twenty_four import slipped_trace, twenty_four_trace

COUNTDOWN3 = SimpleNamespace(min_numbers=3, max_numbers=3, max_number=25, max_target=100)


@pytest.mark.parametrize("name, source, count", [("countdown_search", "countdown", 300),
                                                 ("twenty_four_search", "twenty_four", 150)])
def test_every_trace_reaches_the_target_with_right_steps(name, source, count):
    teacher, solved = TEACHERS.get(name), 0
    for i, row in enumerate(generate(source, count, 7, COUNTDOWN3)):
        trace = teacher(row, random.Random(i))
        if trace is None:
            continue
        solved += 1
        assert score_equation(trace, row["nums"], row["target"]) == 1.0, trace
        assert score_steps(trace) == 1.0, trace  # every `a op b = c` it shows holds
        assert trace.startswith("<think>\n") and trace.endswith("</answer>") and trace.count("</think>") == 1
    assert solved >= 0.95 * count  # the backwards form covers (nearly) every generated task


def test_traces_show_failed_tries_and_stay_short():
    rows = generate("countdown", 300, 3, COUNTDOWN3)
    traces = [countdown_trace(r["nums"], r["target"], random.Random(i)) for i, r in enumerate(rows)]
    backtracked = sum("No." in t for t in traces)
    assert 0.2 * len(traces) < backtracked < 0.8 * len(traces)  # a step back when a try fails, often not
    assert max(t.count("No.") for t in traces) <= 2  # max_failures
    assert max(len(t) for t in traces) < 700  # characters: well inside the SFT context


def test_a_trace_is_reproducible_from_its_seed_and_varies_across_seeds():
    numbers, target = [7, 19, 3], 40
    trace = countdown_trace(numbers, target, random.Random(5))
    assert trace == countdown_trace(numbers, target, random.Random(5))
    assert len({countdown_trace(numbers, target, random.Random(s)) for s in range(20)}) > 1


def test_unsolvable_tasks_give_none():
    assert not solvable([1, 1, 1], 100) and countdown_trace([1, 1, 1], 100, random.Random(0)) is None
    assert twenty_four_trace([1, 1, 1, 1], 24, random.Random(0)) is None
    with pytest.raises(ValueError, match="three-number"):
        countdown_trace([1, 2], 3, random.Random(0))


def test_teachers_are_named_in_distill_configs(tmp_path):
    from system.config.grpo import ConfigError, load_config
    from system.config.recipe import DistillConfig, validate_distill

    cfg = load_config(None, ["teacher=countdown_search"], schema=DistillConfig, check=validate_distill)
    assert cfg.roles().engine == 0  # a program needs no engine
    with pytest.raises(ConfigError, match="did you mean 'countdown_search'"):
        load_config(None, ["teacher=countdown_serch"], schema=DistillConfig, check=validate_distill)
    with pytest.raises(ConfigError, match="do not fit teacher 'twenty_four_episodes'"):
        load_config(None, ["teacher=twenty_four_episodes", "teacher_args={retry_shar: 0.5}"],
                    schema=DistillConfig, check=validate_distill)
    cfg = load_config(None, ["teacher=twenty_four_episodes", "teacher_args={retry_share: 1.0}"],
                      schema=DistillConfig, check=validate_distill)
    assert cfg.teacher_args == {"retry_share": 1.0}


GAME = SimpleNamespace(env_params={"max_turns": 3, "max_number": 9})


def test_a_slipped_trace_misses_24_with_each_number_once():
    from system.rewards.countdown import equation_value

    for i, row in enumerate(generate("twenty_four", 100, 5, COUNTDOWN3)):
        trace, tried = slipped_trace(row["nums"], 24, random.Random(i))
        assert "Yes." in trace and score_steps(trace) == 0.0, trace  # the slip is one wrong step
        assert trace.split("\n")[2] == tried  # a split with no solution, that the retry rules out
        has_answer, value = equation_value(trace, row["nums"])
        assert has_answer and value is not None and value != 24, trace  # each number once, the value wrong


def test_episodes_are_played_through_the_env_and_only_the_recovery_is_trained():
    """The env's own feedback follows each failed try (replayed here on a fresh env), the last reply
    solves the task, and only the failed tries carry weight 0."""
    from system.envs.registry import make_env

    teacher, retries, solved = TEACHERS.get("twenty_four_episodes"), 0, 0
    rows = generate("twenty_four_env", 120, 11, GAME)
    for i, row in enumerate(rows):
        chat = teacher(row, random.Random(i), retry_share=0.5)
        if chat is None:
            continue
        solved += 1
        assert [m["role"] for m in chat] in (["assistant"], ["assistant", "user", "assistant"])
        assert [m.get("weight", 1) for m in chat if m["role"] == "assistant"] == [0] * (len(chat) // 2) + [1]
        env = make_env("twenty_four", **GAME.env_params)
        assert env.reset(row["env_seed"]) == row["prompt"][-1]["content"]
        for reply, feedback in zip(chat[::2], chat[1::2]):
            assert env.step(reply["content"])[0] == feedback["content"]  # the env's text, word for word
        _, reward, done, info = env.step(chat[-1]["content"])
        assert info["success"] and done and reward == 1.0
        solution = chat[-1]["content"]
        assert score_equation(solution, row["nums"], 24) == 1.0 and score_steps(solution) == 1.0
        assert max(map(int, row["nums"])) <= 9
        if len(chat) == 3:  # the recovery first rules out the split the failed try took
            retries += 1
            assert chat[2]["content"].split("\n")[2] == chat[0]["content"].split("\n")[2] + " no."
    assert solved >= 0.9 * len(rows) and 0.3 * solved < retries < 0.7 * solved
    assert all(len(teacher(r, random.Random(0), retry_share=0.0) or []) <= 1 for r in rows[:20])


def test_an_episode_row_of_another_task_is_refused():
    from system.teachers.episodes import play

    row = generate("twenty_four_env", 1, 2, GAME)[0]
    with pytest.raises(ValueError, match="is not this env's task"):
        play("twenty_four", {**row, "env_seed": row["env_seed"] + 2}, ["<answer> 1 </answer>"])
