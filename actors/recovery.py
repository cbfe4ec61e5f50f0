"""Bringing a run back after an actor died: which actors Ray restarted, and what each needs to rejoin.

Every actor of a GRPO run is created with `max_restarts=-1` (actors/placement.py), so Ray starts a
dead one again in its own bundle, running its constructor. What the constructor does not restore:
- policy ranks: one restarted rank leaves the others in a broken DeepSpeed group, so every rank
  restarts and rejoins; the driver then loads the last checkpoint into them (the run rolls back);
- reference and teacher ranks: every rank restarts and rejoins, and `init` loads the frozen weights again;
- engines: the current policy weights, which the driver sends (checksummed) after recovering;
- reward and env workers: nothing; the step's samples are collected again.
The weight-broadcast group is made anew after every failure: a broadcast that lost a peer leaves the
survivors' group unusable. An actor that did not answer in time (ActorFailure.hung) is killed, so
that Ray restarts it too. The actors of a lost node come back only where Ray can place their bundles
again; otherwise the run stops with an error naming the node (actors/nodes.py). The training loop
makes one call when a step fails (`Recovery.resume`): it gets back the step to go on at, with every
actor restored.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Optional

from actors.calls import ActorFailure, process_ids, restart_actors, restart_counts
from actors.nodes import NodeWatch
from system.faults import FaultConfig, FaultError


@dataclass
class StepAttempt:
    """One try at a training step, as far as it got: where the run goes on if it fails."""

    step: int
    data_before: dict  # where the task source stood before this step's tasks (Rollout.state)
    began: float = field(default_factory=time.monotonic)
    phase: str = "eval"  # the phase under way, named in errors and in faults.jsonl
    metrics: dict = field(default_factory=dict)
    updated: bool = False  # the policy took this step's update
    logged: bool = False  # and its metrics are in metrics.jsonl


class Recovery:
    """Knows the process of every actor of `actors` (actors/cluster.py: Actors). `roll_back` takes the
    run back to its last checkpoint and returns the step it starts again at; `newest_checkpoint` finds
    that checkpoint (the newest complete one), for the message of a lost node."""

    def __init__(self, actors, cfg: FaultConfig, run_dir: str, roll_back: Callable[[], int],
                 newest_checkpoint: Callable[[], Optional[str]]):
        self.actors, self.cfg, self.run_dir, self.roll_back = actors, cfg, run_dir, roll_back
        self.pids = process_ids(self.actors.named(), cfg.restart_timeout_s)
        self.restart_counts = restart_counts(self.actors.named())
        self.nodes = NodeWatch(actors.named, actors.placement.pgs, cfg.lost_node_wait_s, newest_checkpoint)
        self.failures = 0  # over the run
        self.failures_in_a_row = 0  # since the last step that finished
        self.restarts = 0  # actors restarted, over the run
        self.lost_s = 0.0  # from the start of each failed step to the end of its recovery, summed

    def step_done(self) -> None:
        self.failures_in_a_row = 0

    def check(self, phase: str = "step start") -> None:
        """At the start of a step, and at the end of a recovery: an actor that died between two calls
        and that Ray restarted has failed no call, but lost its state (an engine its weights): it is
        recovered like any other."""
        counts = restart_counts(self.actors.named())
        changed = sorted(name for name, n in counts.items() if n != self.restart_counts[name])
        if changed:
            raise ActorFailure(changed, phase, "restarted by Ray since the last check")

    def resume(self, error: BaseException, attempt: StepAttempt, producer,
               log: Callable[[dict, int], None]) -> int:
        """After `error` in `attempt`: restart and restore what it broke, and return the step to go on
        at, where no task is lost or trained twice: a restarted policy goes back to its last checkpoint;
        otherwise a step whose update was done is kept (its metrics logged with `log`), one that was not
        is tried again. A failure while recovering (a second actor killed, an engine that dies while it
        gets the weights) is one more failure in a row, recovered from in turn: a random kill can land
        there. `producer` (system/rollout/producer.py) is closed: make a new one."""
        failed_step, since = attempt.step, attempt.began
        detected = time.time()
        producer.close(wait=True)  # nothing touches the task source while the run goes back
        while True:
            restarted = self.failed(error, attempt.phase)  # raises what no actor's failure explains
            try:
                restarted = self.rejoin(restarted)
                step = self.go_back(restarted, attempt, producer, log)
                self.actors.weights.send(step, verify=True)  # every engine serves the policy's weights, checked
                self.check("recovery")  # an actor that restarted while this recovery went on is not restored
                break
            except Exception as again:  # judged by `failed` on the next pass
                self.record(error, attempt.phase, restarted, failed_step, None, since, detected)
                since, detected, error, attempt.phase = time.monotonic(), time.time(), again, "recovery"
        self.record(error, attempt.phase, restarted, failed_step, step, since, detected)
        return step

    def failed(self, error: BaseException, phase: str) -> set[str]:
        """The names of the actors restarted since the last recovery (a hung one is killed first, so
        that Ray restarts it): a new process, or a restart counted in Ray's actor table. An error that
        no actor's death or silence explains is raised again; so is every error with `fault.restart`
        off. Too many failures in a row raise FaultError."""
        if not self.cfg.restart:
            raise error
        failure = actor_failure(error)
        hung = set(failure.actors) if failure is not None and failure.hung else set()
        if hung:
            stuck = [(n, a) for n, a in self.actors.named() if n in hung]
            restart_actors(stuck, self.pids, self.cfg.restart_timeout_s)
        phase = failure.phase if failure is not None else phase
        pids, counts = self.snapshot(phase)
        restarted = hung | {name for name, pid in pids.items()
                            if pid != self.pids[name] or counts[name] != self.restart_counts[name]}
        self.pids, self.restart_counts = pids, counts  # what this recovery restores
        if not restarted:
            raise error
        self.failures += 1
        self.failures_in_a_row += 1
        if self.failures_in_a_row > self.cfg.max_failures_in_a_row:
            raise FaultError(f"{self.failures_in_a_row} actor failures in a row, the last in phase "
                             f"'{phase}': {', '.join(sorted(restarted))} restarted after: {error}") from error
        return restarted

    def snapshot(self, phase: str) -> tuple[dict[str, int], dict[str, int]]:
        """Every actor's process id and restart count, once every one answers, read again until no
        actor restarted while they were read (kills can come while the run recovers), for at most
        `fault.restart_timeout_s`."""
        named, deadline = self.actors.named(), time.monotonic() + self.cfg.restart_timeout_s
        while True:
            counts = restart_counts(named)
            pids = process_ids(named, self.cfg.restart_timeout_s, partial(self.nodes.check, phase))
            again = restart_counts(named)
            if again == counts:
                return pids, counts
            if time.monotonic() > deadline:
                restarting = sorted(name for name in counts if again[name] != counts[name])
                raise ActorFailure(restarting, "restart", f"still restarting after {self.cfg.restart_timeout_s:.0f} s")

    def rejoin(self, restarted: set[str]) -> set[str]:
        """Every rank of a group that lost one restarts and rejoins, and the weight broadcast is made
        anew; returns the actors restarted, those ranks included."""
        for group in [self.actors.policy, self.actors.reference, self.actors.teacher]:
            if group is not None and restarted & set(group.names):
                # The survivors' torch.distributed group lost a member: every rank restarts and rejoins.
                survivors = [(n, a) for n, a in group.named() if n not in restarted]
                self.pids.update(restart_actors(survivors, self.pids, self.cfg.restart_timeout_s))
                self.restart_counts.update(restart_counts(survivors))
                group.init()
                restarted = restarted | set(group.names)
        self.actors.weights = self.actors.weights.renewed()
        self.nodes.refresh()
        self.restarts += len(restarted)
        return restarted

    def go_back(self, restarted: set[str], attempt: StepAttempt, producer, log: Callable[[dict, int], None]) -> int:
        """The step to go on at, with the policy and the task source set back to it. `attempt` is left
        as a try at that step that did nothing yet, for a failure before the recovery ends."""
        if restarted & set(self.actors.policy.names):
            step = self.roll_back()
        else:
            if attempt.updated and not attempt.logged:
                log({**attempt.metrics, **self.metrics()}, attempt.step)
                attempt.logged = True
            step = attempt.step + 1 if attempt.updated else attempt.step
            if attempt.updated:  # a step kept is a step finished: the failures before it are not in a row
                self.step_done()
            self.actors.rollout.load_state(producer.data_state(step) if attempt.updated else attempt.data_before)
        attempt.step, attempt.updated, attempt.data_before = step, False, self.actors.rollout.state()
        return step

    def record(self, error: BaseException, phase: str, restarted: set[str], failed_step: int,
               resumed_at: Optional[int], since: float, detected: float) -> None:
        """A failure dealt with: the time lost (since `since`, time.monotonic(): the start of the failed
        step, or the failure before it in one recovery), a line on the console and one in
        RUN_DIR/faults.jsonl (`detected`: time.time() of the error). `resumed_at` None: another failure
        came while recovering from this one, on the next line."""
        lost = time.monotonic() - since
        self.lost_s += lost
        phase = failure.phase if (failure := actor_failure(error)) is not None else phase
        event = {"detected": detected, "recovered_s": round(time.time() - detected, 2), "phase": phase,
                 "restarted": sorted(restarted), "step": failed_step, "resumed_at": resumed_at,
                 "lost_s": round(lost, 2), "error": f"{type(error).__name__}: {error}"[:500]}
        with open(os.path.join(self.run_dir, "faults.jsonl"), "a") as f:
            f.write(json.dumps(event) + "\n")
        then = "another failed while recovering" if resumed_at is None else f"going on at step {resumed_at}"
        print(f"fault: {', '.join(sorted(restarted))} restarted after a failure in phase '{phase}'; {then} "
              f"({lost:.1f} s lost)", flush=True)

    def metrics(self) -> dict[str, float]:
        return {"fault/failures": self.failures, "fault/restarts": self.restarts, "fault/lost_s": self.lost_s}


def actor_failure(error: BaseException) -> Optional[ActorFailure]:
    """The ActorFailure that caused `error` (the rollout producer hands failures on wrapped), if any."""
    while error is not None and not isinstance(error, ActorFailure):
        error = error.__cause__
    return error
