"""Runs survive dying actors, stop clearly when they cannot, and stop cleanly when told to (real
stack, tiny model): SIGKILL to an engine, a reward worker, the reference, a policy rank and an env
worker in the middle of a step; an actor that dies on every call; SIGTERM to the driver."""

import os
import signal
import subprocess
import sys
import time

import pytest

from launcher.grpo import train
from system.config.grpo import load_config
from system.faults import FaultError
from system.reporting.metrics import read_metrics
from tests.faults import Killer, logged_steps, read_faults
from tests.test_grpo_e2e import ROOT, TINY_RUN
from tests.test_multiturn_e2e import TINY_RUN as TINY_ENV_RUN

DEMO = os.path.join(ROOT, "configs", "grpo_countdown_cpu.yaml")
GAME = os.path.join(ROOT, "configs", "grpo_24point_cpu.yaml")


def start(tmp_path, config: str, overrides: list[str]):
    cfg = load_config(config, overrides + [f"logging.output_dir={tmp_path}", "logging.run_name=run"])
    run_dir = os.path.join(str(tmp_path), "run")
    os.makedirs(run_dir, exist_ok=True)
    return cfg, run_dir


def check_every_step_once(metrics: list[dict], steps: int) -> None:
    assert sorted(m["step"] for m in metrics if "reward/mean" in m) == list(range(steps))


@pytest.mark.e2e
def test_a_run_survives_the_sigkill_of_an_engine_a_reward_worker_the_reference_and_a_policy_rank(
        ray_job, tiny_model, tmp_path):
    cfg, run_dir = start(tmp_path, DEMO,
                         TINY_RUN + ["steps=4", "checkpoint.every=2", "checkpoint.keep_last=3"])
    plan = [(0, "engine-0"), (1, "reward-0"), (1, "reference-0"), (2, "policy-0")]
    killer = Killer(run_dir, plan)
    killer.start()
    train(cfg, run_dir).shutdown()
    killer.join(timeout=10)

    assert [name for name, _ in killer.kills] == [name for _, name in plan]
    # Each kill is found and its actor restarted. An actor idle when killed is found at its next call,
    # or with another failure before it, whichever comes first, so kills close together may be
    # recovered from as one.
    faults = read_faults(run_dir)
    assert 1 <= len(faults) <= len(plan)
    assert {name for f in faults for name in f["restarted"]} == {name for _, name in plan}
    for fault in faults:
        if "policy-0" in fault["restarted"]:
            assert fault["resumed_at"] == 2  # the policy went back to its last checkpoint

    metrics = read_metrics(run_dir)
    check_every_step_once(metrics, 4)
    for m in metrics:
        # After every restart the engine samples with the trainer's weights: the same log-probs.
        assert m["sync/logprob_abs_diff_mean"] < 0.05, m["step"]
        # No prompt lost or drawn twice: each step took the next 4 prompts of the shuffled data.
        assert (m["data/epoch"], m["data/position"]) == (0, 4 * (m["step"] + 1))
    assert metrics[-1]["fault/failures"] == len(faults) and metrics[-1]["fault/restarts"] == 4
    assert metrics[-1]["fault/lost_s"] > 0


@pytest.mark.e2e
def test_a_multi_turn_run_survives_the_sigkill_of_an_env_worker(ray_job, tiny_model, tmp_path):
    cfg, run_dir = start(tmp_path, GAME, TINY_ENV_RUN + ["steps=3", "eval.every=0"])
    killer = Killer(run_dir, [(0, "env-0")])
    killer.start()
    train(cfg, run_dir).shutdown()
    killer.join(timeout=10)
    assert killer.kills and [f["restarted"] for f in read_faults(run_dir)] == [["env-0"]]
    check_every_step_once(read_metrics(run_dir), 3)


@pytest.mark.e2e
def test_an_actor_that_dies_on_every_call_stops_the_run_naming_it_and_the_phase(
        ray_job, tiny_model, tmp_path):
    cfg, run_dir = start(tmp_path, DEMO,
                         TINY_RUN + ["reward.functions={tests.user_plugins:kills_its_worker: 1.0}",
                                                     "reward.num_workers=1", "fault.max_failures_in_a_row=2"])
    with pytest.raises(FaultError, match=r"3 actor failures in a row, the last in phase 'reward': reward-0"):
        train(cfg, run_dir)
    assert [f["restarted"] for f in read_faults(run_dir)] == [["reward-0"], ["reward-0"]]


@pytest.mark.e2e
def test_sigterm_stops_the_driver_at_a_step_boundary_with_a_checkpoint_and_resume_goes_on(
        ray_job, tiny_model, tmp_path):
    run = TINY_RUN + ["steps=4", "algorithm.kl_coef=0", f"logging.output_dir={tmp_path}",
                      "logging.run_name=run"]
    run_dir = os.path.join(str(tmp_path), "run")
    address = ray_job.get_runtime_context().gcs_address
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher", "grpo.py"), "--config", DEMO,
                             *run, f"ray_address={address}"], env={**os.environ, "PYTHONPATH": ROOT},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 400
    while 0 not in logged_steps(run_dir) and time.time() < deadline:
        assert proc.poll() is None, "the run ended before its first step"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    last = max(logged_steps(run_dir))
    assert last < 3, "the run went on to the end instead of stopping"
    assert f"stopped by SIGTERM after {last + 1} of 4 steps" in out
    assert os.path.isdir(os.path.join(run_dir, "checkpoints", f"step_{last + 1:06d}"))

    cfg = load_config(DEMO, run + ["resume=true"])
    train(cfg, run_dir).shutdown()
    check_every_step_once(read_metrics(run_dir), 4)
