"""SkyRL-gym envs as envs (system/envs/skyrl_gym.py): a data row's columns reach the env as its extras,
seeds pick held-out rows (odd) and training rows (even), skyrl_gym's own gsm8k envs score and retry,
a user's BaseTextEnv subclass plays by path; e2e: two GRPO steps through launcher/grpo.py."""

import json
import os

import pytest
from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput

from system.config.grpo import ConfigError, load_config
from system.envs import check_env, make_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RecordingEnv(BaseTextEnv):
    """A user's SkyRL-gym env: it says back the extras it was made with, and ends on 'stop'."""

    def __init__(self, env_config=None, extras=None):
        super().__init__()
        self.env_config, self.extras = env_config, extras

    def step(self, action):
        self.turns += 1
        done = action == "stop"
        answer = [] if done else [{"role": "user", "content": json.dumps(self.extras, sort_keys=True)}]
        return BaseTextEnvStepOutput(observations=answer, reward=float(done), done=done, metadata={})


def write_rows(path, count: int = 10) -> str:
    """SkyRL's row format: a chat prompt and the answer; one row with its own reward_spec and extra_info."""
    rows = [{"prompt": [{"role": "system", "content": "Answer with #### and a number."},
                        {"role": "user", "content": f"What is {i} + 1?"}], "answer": i + 1}
            for i in range(count)]
    rows[3].update(reward_spec={"method": "rule", "ground_truth": "42"}, extra_info={"split": "x"})
    with open(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return str(path)


def test_the_rows_columns_reach_the_env_as_extras(tmp_path):
    data = write_rows(tmp_path / "rows.jsonl")
    env = make_env("skyrl_gym:tests.test_skyrl_gym:RecordingEnv", data=data, num_eval=2, max_turns=4,
                   env_config={"depth": 2})
    assert env.reset(1) == "What is 0 + 1?"  # odd seed 1: held-out row 0
    assert env.system_prompt == "Answer with #### and a number."
    assert env.env.env_config == {"depth": 2}
    extras = json.loads(env.step("go on")[0])
    assert extras == {"answer": 1, "max_turns": 4, "reward_spec": {"method": "rule", "ground_truth": "1"}}
    env.reset(2)  # even seed 2: training row 1 (after the 2 held out), i.e. row 3
    extras = json.loads(env.step("go on")[0])
    assert extras["reward_spec"] == {"method": "rule", "ground_truth": "42"}
    assert extras["extra_info"] == {"split": "x"}
    assert env.step("stop")[1:] == (1.0, True, {"success": True})


def test_odd_seeds_play_held_out_rows_even_seeds_the_others(tmp_path):
    env = make_env("skyrl_gym:gsm8k", data=write_rows(tmp_path / "rows.jsonl"), num_eval=3)
    held_out = {env.reset(seed) for seed in range(1, 200, 2)}
    trained = {env.reset(seed) for seed in range(0, 200, 2)}
    assert held_out == {f"What is {i} + 1?" for i in range(3)}
    assert trained == {f"What is {i} + 1?" for i in range(3, 10)}


def test_gsm8k_multi_turn_scores_and_asks_again(tmp_path):
    data = write_rows(tmp_path / "rows.jsonl")
    env = make_env("skyrl_gym:gsm8k_multi_turn", data=data, num_eval=2, max_turns=3)
    env.reset(1)  # What is 0 + 1?
    observation, reward, done, info = env.step("#### 5")
    assert not done and reward == pytest.approx(0.2 / 3) and "#### ANSWER" in observation
    assert env.step("it is #### 1") == ("", 1.0, True, {"success": True})
    check_env(lambda: make_env("skyrl_gym:gsm8k_multi_turn", data=data, num_eval=2))


def test_bad_names_and_params_fail_at_start_up(tmp_path):
    data = write_rows(tmp_path / "rows.jsonl")
    with pytest.raises(ValueError, match="skyrl_gym has no env 'gsm9k'"):
        make_env("skyrl_gym:gsm9k", data="x.jsonl")
    with pytest.raises(ValueError, match="not a skyrl_gym Env subclass"):
        make_env("skyrl_gym:tests.test_skyrl_gym:write_rows", data="x.jsonl")
    with pytest.raises(ValueError, match="set env.params.data"):
        make_env("skyrl_gym:gsm8k")
    with pytest.raises(ValueError, match="num_eval=10 must leave rows"):
        make_env("skyrl_gym:gsm8k", data=data, num_eval=10)
    with pytest.raises(ValueError, match="no 'question' column"):
        make_env("skyrl_gym:gsm8k", data=data, num_eval=2, prompt_column="question")
    with pytest.raises(ValueError, match="cannot play .*AssertionError: reward_spec field is required"):
        make_env("skyrl_gym:gsm8k", data=data, num_eval=2, ground_truth="")
    with pytest.raises(ConfigError, match="env.cls"):
        load_config(os.path.join(ROOT, "configs", "grpo_skyrl_gym_cpu.yaml"), ["env.cls=skyrl_gym:nope"])


def test_the_shipped_config_plays_its_rows():
    cfg = load_config(os.path.join(ROOT, "configs", "grpo_skyrl_gym_cpu.yaml"), [])
    env = make_env(cfg.env.cls, **cfg.env.params)
    assert len(env.rows) == 96 and cfg.env.num_eval_seeds == env.num_eval == 16
    first = env.reset(1)
    answer = env.rows[0]["answer"]
    assert first.startswith("What is ") and env.step(cfg.data.response_prefix + answer)[1] == 1.0


@pytest.mark.e2e
def test_two_grpo_steps_on_a_skyrl_gym_env(ray_job, tiny_model, tmp_path):
    """Env workers read the rows of the shipped data file and play SkyRL's gsm8k_multi_turn on them,
    held-out rows in evaluation."""
    from tests.test_textarena import train_tiny

    trained, run_dir, metrics = train_tiny("grpo_skyrl_gym_cpu.yaml", tmp_path)  # data: from the repo root
    assert [m["step"] for m in metrics] == [0, 1, 2]
    for m in metrics[:2]:
        assert 1.0 <= m["env/turns"] <= 2.0 and "reward/mean" in m
    with open(os.path.join(run_dir, "eval", "step_000002.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    with open(os.path.join(ROOT, "configs", "skyrl_gym_arithmetic.jsonl")) as f:
        held_out = [json.loads(line)["prompt"][0]["content"] for line in f][:2]
    assert [row["completion"].split("\n")[0] for row in logged] == [f"[env] {text}" for text in held_out]
    assert all("[model] #### " in row["completion"] for row in logged)
    trained.shutdown()
