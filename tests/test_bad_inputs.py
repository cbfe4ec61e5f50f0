"""Every bad input has a defined outcome (docs/reliability.md, "Bad inputs"): prompts longer than
the engine's context, empty data, a missing model, a reward that raises, a damaged checkpoint or
one of another model. Each error comes before any actor starts, and says what to do."""

import json
import os
import shutil

import pytest
import torch

from actors.reward import RewardPool
from launcher.lifecycle import check_resume, make_run_dir
from system.checkpoint import CheckpointError, check_checkpoint, save_driver_state
from system.config.grpo import Config, ConfigError, DataConfig, RewardConfig, load_config
from system.data import DataError, drop_overlong, load_splits
from system.data.prompts import encode_prompt
from system.models import resolve_model
from system.rewards import RewardError, RewardScorer
from system.rewards.scorer import run_reward
from system.rollout.single_turn import SingleTurnRollout


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def chat(words: int) -> dict:
    return {"messages": [{"role": "user", "content": "count " * words}], "answer": str(words)}


def run_config(tokenizer, budget: int, **data) -> Config:
    """A config whose engine takes prompts of up to `budget` tokens."""
    cfg = Config(data=DataConfig(**data))
    cfg.rollout.max_new_tokens, cfg.rollout.max_model_len = 16, 16 + budget
    return cfg


def prompt_length(tokenizer, row: dict) -> int:
    return len(encode_prompt(tokenizer, row["messages"]))


# Prompts longer than rollout.max_model_len - rollout.max_new_tokens

def test_overlong_rows_are_dropped_at_load_time_and_a_split_left_empty_is_an_error(tokenizer, capsys):
    short, long = chat(3), chat(300)
    cfg = run_config(tokenizer, prompt_length(tokenizer, short))
    train, held_out = drop_overlong(([short, long, short], [long, short]), tokenizer, cfg)
    assert train == [short, short] and held_out == [short]
    assert "dropped 1 of 3 train rows" in capsys.readouterr().out
    with pytest.raises(DataError,
                       match="no train row has a prompt of at most 34 tokens "
                             ".*data.overlong_prompts=truncate_left"):
        drop_overlong(([long], []), tokenizer, cfg)
    cfg.rollout.max_new_tokens = cfg.rollout.max_model_len
    with pytest.raises(DataError, match="leaves no room for a prompt"):
        drop_overlong(([short], []), tokenizer, cfg)


class FakeEngines:
    def generate(self, prompts, n, temperature, seed, top_p=None):
        self.prompts = prompts
        sample = {"text": "1", "response": [16], "logprobs": [-0.5], "finish_reason": "stop", "versions": [0]}
        return [[sample] * n for _ in prompts]


def test_truncate_left_keeps_the_prompts_end_and_counts_it(tokenizer):
    short, long = chat(3), chat(300)
    budget = prompt_length(tokenizer, short) + 10
    cfg = run_config(tokenizer, budget, overlong_prompts="truncate_left")
    splits = ([short, long], [long])
    assert drop_overlong(splits, tokenizer, cfg) == splits  # kept: encoding cuts them
    engines = FakeEngines()
    rewards = RewardScorer(RewardConfig(functions={"format": 1.0}))
    rollout = SingleTurnRollout(engines, rewards, tokenizer, cfg)
    rollouts = rollout.collect([short, long], seed=0, n=2, temperature=1.0)
    full = encode_prompt(tokenizer, long["messages"])
    assert engines.prompts == [encode_prompt(tokenizer, short["messages"]), full[-budget:]]
    assert [len(t) for t in rollouts.tokens] == [budget - 10 + 1] * 2 + [budget + 1] * 2
    assert rollout.truncated_prompts == 1


def test_overlong_prompts_is_a_checked_choice():
    assert load_config(None, []).data.overlong_prompts == "drop"
    with pytest.raises(ConfigError, match="'data.overlong_prompts' must be one of"):
        load_config(None, ["data.overlong_prompts=cut"])


# Empty data sets and splits

def test_empty_data_sets_and_splits_are_errors_that_name_the_source(tmp_path, monkeypatch):
    import datasets

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match=f"'{empty}' \\(split 'train'\\) has no rows"):
        load_splits(DataConfig(source=str(empty), num_eval=0))
    # A hub data set whose split is empty (no hub here: load_dataset answers as the hub would).
    monkeypatch.setattr(datasets, "load_dataset", lambda source, split: datasets.Dataset.from_list([]))
    with pytest.raises(DataError, match="'org/data' \\(split 'test'\\) has no rows"):
        load_splits(DataConfig(source="org/data", split="test", num_eval=0))
    with pytest.raises(DataError, match="data.num_train=0: training needs at least one row"):
        load_splits(DataConfig(source=str(empty), num_train=0, num_eval=1))
    with pytest.raises(DataError, match="data.num_train=0"):
        load_splits(DataConfig(source="countdown", num_train=0, num_eval=1))


def test_all_rows_malformed_or_skipped_is_an_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "no prompt column"}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl, line 1: no prompt"):
        load_splits(DataConfig(source=str(bad), num_eval=0))
    unboxed = tmp_path / "unboxed.jsonl"
    unboxed.write_text(json.dumps({"problem": "p", "solution": "no box"}) + "\n")
    with pytest.raises(DataError, match="0 rows, not enough for num_eval=0 plus training"):
        load_splits(DataConfig(source=str(unboxed), num_eval=0, answer_from_boxed="solution",
                               skip_unboxed=True))


# A missing model

def test_a_missing_model_path_or_misspelt_name_is_an_error_with_a_suggestion(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.path '/does/not/exist': no such folder"):
        resolve_model("/does/not/exist")
    (tmp_path / "my-model").mkdir()
    with pytest.raises(FileNotFoundError, match=f"did you mean {tmp_path}/my-model\\?"):
        resolve_model(str(tmp_path / "my-modle"))
    with pytest.raises(ValueError, match="did you mean 'smollm2-135m'"):
        resolve_model("SmolLM2-135M")
    with pytest.raises(ValueError, match="did you mean 'tiny'"):
        resolve_model("tiny2")


@pytest.fixture
def no_ray(monkeypatch):
    """The GRPO launcher, failing the test if it gets as far as starting Ray (and then actors)."""
    import launcher.grpo

    monkeypatch.setattr(launcher.grpo, "start_ray", lambda *args: pytest.fail("Ray was started"))
    return launcher.grpo.main


def test_the_launcher_stops_on_a_missing_model_before_ray_starts(no_ray, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        no_ray(["model.path=/does/not/exist", f"logging.output_dir={tmp_path}",
                "logging.wandb_mode=disabled"])


# A reward that raises

def picky(completions: list[str], answer: list[str], **columns) -> list[float]:
    if "boom" in completions:
        raise ZeroDivisionError("picky cannot score this")
    return [float(c == a) for c, a in zip(completions, answer)]


def test_a_raising_reward_is_an_error_naming_the_reward_and_the_sample():
    columns = {"answer": ["1", "2", "3"], "nums": [[1, 2], [3, 4], [5, 6]]}
    assert run_reward("picky", picky, ["1", "x", "3"], columns) == [1.0, 0.0, 1.0]
    with pytest.raises(RewardError) as error:
        run_reward("picky", picky, ["1", "boom", "3"], columns, first=8)
    message = str(error.value)
    assert "reward 'picky' raised on sample 9 of the batch" in message
    assert "{answer: '2', nums: [3, 4]}" in message and "completion 'boom'" in message
    assert "ZeroDivisionError: picky cannot score this" in message


def test_a_reward_raising_only_on_a_whole_batch_names_its_samples():
    def pairs_only(completions, **columns):
        if len(completions) > 1:
            raise ValueError("one at a time")
        return [0.0] * len(completions)

    with pytest.raises(RewardError, match="raised on samples 4-5 together, though on none of them alone"):
        run_reward("pairs_only", pairs_only, ["a", "b"], {}, first=4)


@pytest.mark.e2e
def test_a_raising_reward_in_a_reward_worker_reaches_the_driver_as_that_error(ray_job):
    pool = RewardPool(RewardConfig(functions={"tests.test_bad_inputs:picky": 1.0}), [{"num_cpus": 0.1}] * 2)
    completions, answers = ["1", "2", "3", "boom"], {"answer": ["1", "2", "3", "4"]}
    with pytest.raises(RewardError,
                       match="reward 'tests.test_bad_inputs:picky' raised on sample 3 of the batch"):
        pool.score(completions, answers, group_size=2)
    for worker in pool.workers:
        ray_job.kill(worker)


# A damaged checkpoint, or one of another model

@pytest.fixture
def checkpoint(tmp_path, tiny_model):
    """A checkpoint's files as a GRPO run saves them, of the tiny model."""
    path = tmp_path / "run" / "checkpoints" / "step_000002"
    (path / "deepspeed" / "state").mkdir(parents=True)
    shutil.copytree(tiny_model, path / "policy")
    torch.save({}, path / "deepspeed" / "state" / "mp_rank_00_model_states.pt")
    save_driver_state(str(path), 2, {"epoch": 0, "position": 8}, str(tmp_path / "no-metrics.jsonl"))
    check_checkpoint(str(path), tiny_model)  # complete
    return path


def test_an_incomplete_or_damaged_checkpoint_is_an_error(checkpoint, tiny_model):
    (checkpoint / "rng.pt").unlink()
    with pytest.raises(CheckpointError, match="is incomplete: no rng.pt"):
        check_checkpoint(str(checkpoint), tiny_model)
    torch.save({}, checkpoint / "rng.pt")
    (checkpoint / "state.json").write_text('{"step": 2, "sampl')
    with pytest.raises(CheckpointError, match="is damaged \\(JSONDecodeError"):
        check_checkpoint(str(checkpoint), tiny_model)
    (checkpoint / "state.json").write_text('{"step": 2, "sampler": {}}')
    weights = checkpoint / "policy" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    with pytest.raises(CheckpointError, match="is damaged"):
        check_checkpoint(str(checkpoint), tiny_model)


def test_a_checkpoint_of_another_model_is_an_error(checkpoint, smollm2):
    with pytest.raises(CheckpointError,
                       match="of another model .* hidden_size 128 \\(the run's model: 576\\)"):
        check_checkpoint(str(checkpoint), smollm2)


def test_resume_names_a_checkpoint_that_exists(checkpoint, tmp_path, tiny_model):
    cfg = load_config(None,
                      [f"resume={tmp_path}/run/checkpoints/step_000009", f"logging.output_dir={tmp_path}"])
    with pytest.raises(CheckpointError, match="step_000009: no such checkpoint folder"):
        make_run_dir(cfg, None)
    empty_run = tmp_path / "other"
    empty_run.mkdir()
    with pytest.raises(CheckpointError, match="no complete checkpoint in"):
        check_resume(load_config(None, ["resume=true"]), str(empty_run), tiny_model)
    check_resume(load_config(None, ["resume=true"]), str(checkpoint.parent.parent), tiny_model)


def test_the_launcher_stops_on_a_bad_checkpoint_before_ray_starts(no_ray, checkpoint):
    (checkpoint / "state.json").unlink()
    with pytest.raises(CheckpointError, match="is incomplete: no state.json"):
        no_ray(["model.path=tiny", f"resume={checkpoint}", "logging.wandb_mode=disabled"])


@pytest.mark.e2e
@pytest.mark.parametrize("fragile_every", [4, 1])
def test_an_env_whose_step_raises_ends_the_episode_as_failed_and_too_many_in_a_row_stop_the_run(
        ray_job, tiny_model, tmp_path, fragile_every):
    from launcher.grpo import train
    from system.reporting.metrics import read_metrics
    from system.rollout.multiturn import EnvError
    from tests.test_grpo_e2e import ROOT
    from tests.test_multiturn_e2e import TINY_RUN

    cfg = load_config(os.path.join(ROOT, "configs", "grpo_24point_cpu.yaml"), TINY_RUN + [
        "env.cls=tests.user_plugins:FragileGym",
        f"env.params={{max_turns: 2, fragile_every: {fragile_every}}}",
        "prompts_per_step=4", "eval.every=0", "env.max_errors_in_a_row=8", f"logging.output_dir={tmp_path}"])
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    # every episode raises: the eighth in a row stops the run, with the env's traceback
    if fragile_every == 1:
        with pytest.raises(RuntimeError) as stopped:
            train(cfg, run_dir)
        assert isinstance(stopped.value.__cause__, EnvError)
        assert "8 episodes in a row" in str(stopped.value.__cause__)
        assert "ZeroDivisionError: the env's own bug" in str(stopped.value.__cause__)
        return
    train(cfg, run_dir).shutdown()
    metrics = read_metrics(run_dir)
    assert [m["step"] for m in metrics] == [0, 1]
    # Seeds 0, 4, 8, .. raise: their episodes end at once, unscored, counted; the rest play on.
    assert all(0 < m["env/errors"] < 1 for m in metrics)
    assert all(m["reward/unscorable_frac"] == m["env/errors"] for m in metrics)
