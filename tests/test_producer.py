"""The rollout schedule (system/rollout/producer.py) against a fake rollout: which batch may start
when, what a checkpoint keeps of the task source, and that failures and waits end in errors."""

import time

import pytest

from system.rollout.base import Rollout, RolloutBatch
from system.rollout.producer import RolloutProducer


class Counting(Rollout):
    """Tasks are positions in a stream; every collect records the trainer's step at its start."""

    correctness, max_response_tokens = None, 1

    def __init__(self, trainer_step: list[int], fail_at: int | None = None, delay_s: float = 0.0):
        self.position, self.trainer_step, self.fail_at, self.delay_s = 0, trainer_step, fail_at, delay_s
        self.started: dict[int, int] = {}  # first task of a batch -> the trainer's step when it started
        self.generate_s = 0.0

    def train_tasks(self, step_seed):
        tasks = [self.position, self.position + 1]
        self.position += 2
        return tasks

    def eval_tasks(self):
        return []

    def describe(self, tasks):
        return [str(t) for t in tasks]

    def collect(self, tasks, seed, n, temperature):
        if tasks[0] // 2 == self.fail_at:
            raise ValueError("a reward worker died")
        self.started[tasks[0]] = self.trainer_step[0]
        time.sleep(self.delay_s)
        return RolloutBatch(tokens=[[t] for t in tasks], loss_mask=[[1]] * 2, logprobs=[[0.0]] * 2,
                            rewards=[0.0] * 2, scores={}, finish_reasons=["stop"] * 2, texts=["x"] * 2,
                            versions=[[0]] * 2, timings={"timing/generate_s": self.generate_s})

    def state(self):
        return {"position": self.position}

    def progress(self):
        return {"data/position": self.position}


def run(k: int, steps: int = 6, **kw):
    trainer_step = [0]
    rollout = Counting(trainer_step, **kw)
    producer = RolloutProducer(rollout, seed_of=lambda s: s, group_size=2, temperature=1.0, start=0,
                               steps=steps, max_staleness=k, timeout_s=10)
    taken, states = [], []
    for step in range(steps):
        trainer_step[0] = step
        producer.allow(step)
        batch = producer.take(step)
        time.sleep(0.05)  # "training": the producer may run ahead meanwhile
        taken.append((batch.step, batch.rollouts.tokens, batch.progress))
        states.append(producer.data_state(step + 1))
    producer.close()
    return rollout, taken, states


@pytest.mark.parametrize("k", [0, 1, 2])
def test_batch_j_starts_once_the_trainer_is_at_step_j_minus_k(k):
    rollout, taken, _ = run(k)
    assert [t[0] for t in taken] == list(range(6))
    # the tasks in order, none twice
    assert [t[1] for t in taken] == [[[2 * j], [2 * j + 1]] for j in range(6)]
    # batch j (first task 2j) started when the trainer was at step >= j - k; with k = 0, exactly j
    assert all(rollout.started[2 * j] >= j - k for j in range(6))
    if k == 0:
        assert [rollout.started[2 * j] for j in range(6)] == list(range(6))
    else:  # it really ran ahead
        assert any(rollout.started[2 * j] < j for j in range(6))
    assert [t[2] for t in taken] == [{"data/position": 2 * (j + 1)} for j in range(6)]


@pytest.mark.parametrize("k", [0, 2])
def test_a_checkpoint_keeps_the_position_of_the_first_untrained_batch(k):
    _, _, states = run(k)
    # after training step j, a resumed run must start by drawing batch j + 1's tasks: position 2(j + 1),
    # however many batches the producer had already drawn ahead
    assert states == [{"position": 2 * (j + 1)} for j in range(6)]


def test_a_failed_collection_is_raised_at_the_trainers_next_take():
    with pytest.raises(RuntimeError, match="step 2") as e:
        run(1, fail_at=2)
    assert "a reward worker died" in str(e.value.__cause__)


def test_a_batch_that_never_comes_times_out_with_the_phase():
    rollout = Counting([0], delay_s=2.0)
    producer = RolloutProducer(rollout, lambda s: s, 2, 1.0, start=0, steps=2, max_staleness=0, timeout_s=0.3)
    producer.allow(0)
    with pytest.raises(TimeoutError, match="no batch for step 0 within 0 s .*collecting rollouts"):
        producer.take(0)
    producer.close()


def test_engine_seconds_count_the_generating_share_of_each_batch_inside_a_window():
    # each collect takes ~0.3 s of which its rollouts say 0.15 s generated: half of it
    rollout = Counting([0], delay_s=0.3)
    rollout.generate_s = 0.15
    producer = RolloutProducer(rollout, lambda s: s, 2, 1.0, start=0, steps=3, max_staleness=2, timeout_s=10)
    start = time.monotonic()
    producer.allow(0)
    batches = [producer.take(step) for step in range(3)]
    end = time.monotonic()
    seconds = producer.engine_seconds(start, end)
    assert seconds == pytest.approx(0.5 * sum(b.ended - b.began for b in batches), rel=0.05)
    middle = batches[1]
    seconds = producer.engine_seconds(middle.began, middle.ended)
    assert seconds == pytest.approx(0.5 * (middle.ended - middle.began), rel=0.05)
    assert producer.engine_seconds(end + 1, end + 2) == 0.0
    producer.close()
