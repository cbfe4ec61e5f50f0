"""A run under chaos (real stack, tiny model): SIGKILL to a random actor of a random role at random
moments, asynchronous rollouts in flight, kills landing while the run recovers from the last one.
The long version, with figures: bench/chaos.py."""

import pytest

from launcher.grpo import tasks_digest, train
from system.data.prompts import encode_prompt
from system.reporting.metrics import read_metrics
from system.rollout.base import RolloutBatch
from tests.faults import Chaos, chaos_invariants, kill_noticed, read_faults
from tests.test_faults_e2e import DEMO, start
from tests.test_grpo_e2e import TINY_RUN

STEPS = 6


def drawn(rollout, steps: int) -> list[dict]:
    """What a run without failures trains at each step: the task source replayed from its start, each
    step's tasks as the rows metrics.jsonl would hold (data position and tasks digest)."""
    data, rows = rollout.cfg.data, []
    rollout.load_state({"epoch": 0, "position": 0})
    for step in range(steps):
        prompts = [encode_prompt(rollout.tokenizer, row["messages"], data.response_prefix, data.prompt_format)
                   for row in rollout.train_tasks(0)]
        batch = RolloutBatch([p + [0] for p in prompts], [[0] * len(p) + [1] for p in prompts], [], [], {}, [], [], [])
        rows.append({"step": step, **rollout.progress(), "data/tasks_digest": tasks_digest(batch)})
    return rows


@pytest.mark.e2e
def test_an_async_run_survives_random_kills_of_random_actors_with_every_invariant_held(
        ray_job, tiny_model, tmp_path):
    cfg, run_dir = start(tmp_path, DEMO, TINY_RUN + [
        f"steps={STEPS}", "schedule.max_staleness=1", "checkpoint.every=2", "checkpoint.keep_last=2",
        "fault.max_failures_in_a_row=5"])
    chaos = Chaos(run_dir, last_step=STEPS - 1, every_s=3, seed=7, max_kills=4, timeout_s=600)
    chaos.start()
    try:
        actors = train(cfg, run_dir)  # returns: no kill ended the run
    finally:
        chaos.stop()

    metrics, faults = read_metrics(run_dir), read_faults(run_dir)
    assert len(chaos.kills) >= 3, chaos.kills
    assert chaos_invariants(metrics, STEPS, drawn(actors.rollout, STEPS)) == {
        "every_step_logged_once": True, "same_tasks_and_position": True}
    actors.shutdown()
    # Every kill was found and recovered from, but one made in the last step, which may end before it
    # calls the dead actor again.
    for kill in chaos.kills:
        assert kill_noticed(kill, faults) is not None or kill["logged"] == STEPS - 2, (kill, faults)
    # Every recovery ended with the policy's weights in every engine, checksummed (a failed check
    # raises): the run went on after each failure, or another came while recovering from it, which
    # the next line of faults.jsonl recovered from.
    for fault, after in zip(faults, faults[1:] + [None]):
        assert fault["resumed_at"] is not None or (after is not None and after["step"] == fault["step"])
