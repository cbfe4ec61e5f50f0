"""logging.trackers: TensorBoard's event files hold the numbers of metrics.jsonl, step for step, also
after a run goes back (a resume, a restart from a checkpoint); the config names the key it rejects."""

import math
import os
from collections import defaultdict

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from system.config.grpo import ConfigError, LoggingConfig, load_config
from system.config.recipe import SFTConfig, validate_sft
from system.reporting.metrics import MetricsLogger, drop_metrics_from, next_step, read_metrics
from system.reporting.trackers import open_trackers

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def tensorboard_scalars(run_dir: str) -> dict[str, list[tuple[int, float | str]]]:
    """tag -> [(step, value)] as TensorBoard's reader shows them (it hides purged steps)."""
    events = EventAccumulator(os.path.join(run_dir, "tensorboard"))
    events.Reload()
    return {tag: [(e.step, _same(e.value)) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def jsonl_numbers(run_dir: str) -> dict[str, list[tuple[int, float | str]]]:
    """key -> [(step, value)] of metrics.jsonl's numbers (bools too), as 32-bit floats like TensorBoard's."""
    numbers = defaultdict(list)
    for record in read_metrics(run_dir):
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                numbers[key].append((record["step"], _same(float(np.float32(value)))))
    return dict(numbers)


def _same(value: float) -> float | str:
    return "nan" if math.isnan(value) else value  # NaN == NaN, for the comparison


def tensorboard_logger(run_dir: str) -> MetricsLogger:
    trackers = open_trackers(LoggingConfig(trackers=["tensorboard"]), run_dir, {}, "run", next_step(run_dir))
    return MetricsLogger(run_dir, trackers)


def step_metrics(step: int, offset: float = 0.0) -> dict:
    return {"reward/mean": 0.1234567891 + step + offset, "train/tokens": 1000 * step,
            "sync/checksum_ok": True, "kl/mean": torch.tensor(0.25 * step), "timing/wall_s": np.float64(3.5),
            "eval/missing": float("nan"), "sample/text": "not a number", "eval/pass_k": [1, 4]}


def test_tensorboard_holds_every_number_of_metrics_jsonl_at_its_step(tmp_path):
    run_dir = str(tmp_path)
    logger = tensorboard_logger(run_dir)
    for step in range(3):
        logger.log(step_metrics(step), step)
    logger.close()
    scalars = tensorboard_scalars(run_dir)
    assert scalars == jsonl_numbers(run_dir)
    assert set(scalars) == {"reward/mean", "train/tokens", "sync/checksum_ok", "kl/mean", "timing/wall_s",
                            "eval/missing"}  # the string and the list are metrics.jsonl's only
    assert scalars["reward/mean"][2] == (2, pytest.approx(2.1234567891, rel=1e-7))
    assert scalars["sync/checksum_ok"] == [(0, 1.0), (1, 1.0), (2, 1.0)]


def test_a_resumed_run_replaces_the_steps_after_its_checkpoint(tmp_path):
    run_dir = str(tmp_path)
    killed = tensorboard_logger(run_dir)
    for step in range(4):
        killed.log(step_metrics(step), step)  # not closed: the process was killed after step 3
    drop_metrics_from(run_dir, 2)  # what restoring the checkpoint of step 2 does to metrics.jsonl
    assert next_step(run_dir) == 2
    resumed = tensorboard_logger(run_dir)
    for step in range(2, 5):
        resumed.log(step_metrics(step, offset=10.0), step)
    resumed.close()
    scalars = tensorboard_scalars(run_dir)
    assert scalars == jsonl_numbers(run_dir)
    assert [step for step, _ in scalars["reward/mean"]] == [0, 1, 2, 3, 4]  # each once
    assert scalars["reward/mean"][2][1] == pytest.approx(12.1234567891, rel=1e-7)


def test_a_run_that_goes_back_in_the_same_process_replaces_those_steps(tmp_path):
    run_dir = str(tmp_path)
    logger = tensorboard_logger(run_dir)
    for step in range(3):
        logger.log(step_metrics(step), step)
    drop_metrics_from(run_dir, 1)  # launcher/grpo.py roll_back: a restarted policy goes back to step 1
    for step in range(1, 3):
        logger.log(step_metrics(step, offset=10.0), step)
    logger.close()
    assert tensorboard_scalars(run_dir) == jsonl_numbers(run_dir)
    assert [step for step, _ in tensorboard_scalars(run_dir)["reward/mean"]] == [0, 1, 2]


def test_trackers_follow_the_config(tmp_path):
    def names(**logging):
        trackers = open_trackers(LoggingConfig(**logging), str(tmp_path), {}, "run", 0)
        return [type(t).__name__ for t in trackers]

    assert names(trackers=[]) == []
    assert names(trackers=["tensorboard"]) == ["TensorBoardTracker"]
    assert names(trackers=["wandb", "tensorboard"], wandb_mode="disabled") == ["TensorBoardTracker"]
    assert os.path.isdir(tmp_path / "tensorboard")


def test_logging_trackers_in_the_config():
    grpo = os.path.join(CONFIGS, "grpo_countdown_cpu.yaml")
    assert load_config(grpo).logging.trackers == ["wandb"]
    both = load_config(grpo, ["logging.trackers=[wandb,tensorboard]"])
    assert both.logging.trackers == ["wandb", "tensorboard"]
    assert load_config(grpo, ["logging.trackers=[]"]).logging.trackers == []
    with pytest.raises(ConfigError, match=r"'logging.trackers' can list \['wandb', 'tensorboard'\], got"):
        load_config(grpo, ["logging.trackers=[wandb,tb]"])
    with pytest.raises(ConfigError, match="logging.trackers"):  # a list, not one name
        load_config(grpo, ["logging.trackers=tensorboard"])
    with pytest.raises(ConfigError, match="did you mean 'logging.trackers'"):
        load_config(grpo, ["logging.tracker=[tensorboard]"])
    with pytest.raises(ConfigError, match="'logging.trackers'"):  # every run kind's schema checks it
        load_config(os.path.join(CONFIGS, "sft_arithmetic_cpu.yaml"), ["logging.trackers=[mlflow]"],
                    schema=SFTConfig, check=validate_sft)


@pytest.mark.e2e
def test_a_grpo_run_writes_the_numbers_of_its_metrics_jsonl_to_tensorboard(ray_job, tiny_model, tmp_path):
    from tests.test_grpo_e2e import run

    actors, metrics = run(tmp_path, "logging.trackers=[tensorboard]")
    actors.shutdown()
    run_dir = str(tmp_path / "run")
    assert [m["step"] for m in metrics] == [0, 1]
    assert tensorboard_scalars(run_dir) == jsonl_numbers(run_dir)
    assert {"reward/mean", "train/grad_norm", "sync/checksum_ok"} <= set(tensorboard_scalars(run_dir))


def test_going_back_to_step_0_before_anything_was_logged_is_not_an_error(tmp_path):
    """A policy rank that dies in the first update rolls the run back to step 0 before metrics.jsonl exists."""
    drop_metrics_from(str(tmp_path), 0)
    assert next_step(str(tmp_path)) == 0
