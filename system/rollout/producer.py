"""The schedule of rollouts against updates: a producer thread collects each step's samples
ahead of the trainer, at most `max_staleness` (k) policy versions ahead.

The trainer calls `allow(step)` once it has begun `step` (its evaluation done): from then on the
batches of steps up to step + k may be collected. Batch j therefore starts on engines that hold
at least the weights of update j - k, and is trained at step j by the policy of version j: every
token it holds is at most k versions stale. The engines stamp each token with the version that
sampled it (RolloutBatch.versions), so the bound is measured, not assumed.

k = 0 is the synchronous loop: batch j starts after step j's evaluation, when the weights of
update j - 1 have been synced, and the trainer waits for it; the same samples, seeds and order.
k >= 1: batches j+1 .. j+k are generated while the trainer updates on batch j; at most k finished
batches wait (the producer is throttled by `allow`, never dropping one).

Checkpoints keep the task source's state from before the first batch not yet trained, so a
resumed run draws the same tasks; batches that were in flight are collected again, by the
resumed policy (bit-exact only at k = 0).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from system.rollout.base import Rollout, RolloutBatch


@dataclass
class Batch:
    step: int
    rollouts: RolloutBatch
    progress: dict[str, float]  # where the task source stood once this batch's tasks were drawn
    ready: int  # batches finished and waiting when the trainer took this one (this one included)
    began: float  # time.monotonic() when its collection began, and when it ended
    ended: float


class RolloutProducer:
    def __init__(self, rollout: Rollout, seed_of: Callable[[int], int], group_size: int, temperature: float,
                 start: int, steps: int, max_staleness: int, timeout_s: float):
        self.rollout, self.seed_of, self.n, self.temperature = rollout, seed_of, group_size, temperature
        self.steps, self.k, self.timeout_s = steps, max_staleness, timeout_s
        self._allowed = start - 1  # the last step whose batch may be collected
        self._states: dict[int, dict] = {}  # step -> the task source's state before its tasks were drawn
        self._ready: dict[int, tuple[RolloutBatch, dict, float, float]] = {}
        # (began, ended or None while collecting, the share of it the engines generated) per batch
        self._spans: list[list] = []
        self._error: BaseException | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._produce, args=(start,), name="rollout-producer", daemon=True)
        self._thread.start()

    def allow(self, step: int) -> None:
        """The trainer has begun `step`: batches up to step + k may be collected."""
        with self._cond:
            self._allowed = max(self._allowed, min(step + self.k, self.steps - 1))
            self._cond.notify_all()

    def take(self, step: int) -> Batch:
        """Step `step`'s batch, waiting at most `timeout_s` for it; a failed collection raises here."""
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            while step not in self._ready and self._error is None:
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"rollout producer: no batch for step {step} within {self.timeout_s:.0f} s "
                                       f"(phase: collecting rollouts from the engines / reward or env workers)")
            if self._error is not None:
                raise RuntimeError(f"rollout producer failed collecting step {step}'s batch") from self._error
            self._states.pop(step, None)  # a checkpoint from now on is taken after this batch
            rollouts, progress, began, ended = self._ready.pop(step)
            return Batch(step, rollouts, progress, len(self._ready) + 1, began, ended)

    def data_state(self, step: int) -> dict:
        """What a checkpoint taken before `step` is trained must hold of the task source."""
        with self._cond:
            return self._states[step] if step in self._states else self.rollout.state()

    def engine_seconds(self, start: float, end: float) -> float:
        """Seconds of [start, end] (time.monotonic) in which the engines generated for the producer;
        spans that ended before `start` are forgotten."""
        with self._cond:
            self._spans = [s for s in self._spans if s[1] is None or s[1] > start]
            return sum(max(0.0, min(end, ended or end) - max(start, began)) * share
                       for began, ended, share in self._spans)

    def close(self, wait: bool = False) -> None:
        """No batch is started from now on; with `wait`, the one being collected is waited for (at
        most `timeout_s`), so that nothing touches the task source after this returns."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if wait:
            self._thread.join(self.timeout_s)
            if self._thread.is_alive():
                raise TimeoutError(f"rollout producer: the batch being collected did not end within "
                                   f"{self.timeout_s:.0f} s of closing (phase: collecting rollouts)")

    def _produce(self, start: int) -> None:
        try:
            for step in range(start, self.steps):
                with self._cond:
                    while self._allowed < step and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                    self._states[step] = self.rollout.state()
                    seed = self.seed_of(step)
                    tasks = self.rollout.train_tasks(seed)
                    progress = self.rollout.progress()
                    span = [time.monotonic(), None, 1.0]  # while collecting: count it all as generating
                    self._spans.append(span)
                rollouts = self.rollout.collect(tasks, seed, self.n, self.temperature)
                with self._cond:
                    span[1] = time.monotonic()
                    span[2] = min(1.0, rollouts.timings.get("timing/generate_s", 0.0) / max(span[1] - span[0], 1e-9))
                    self._ready[step] = (rollouts, progress, span[0], span[1])
                    self._cond.notify_all()
        except BaseException as e:  # handed to the trainer at its next take()
            with self._cond:
                self._error = e
                self._cond.notify_all()
