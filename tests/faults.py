"""Killing a run's actors from outside, as a dying process or node would: SIGKILL to an actor's
process once the run has logged a given step, so that the kill lands in the middle of the next
step (Killer; tests/test_faults_e2e.py, bench/faults.py), or to a random actor at random moments
(Chaos; tests/test_chaos_e2e.py, bench/chaos.py)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time

import ray


def _pid(actor) -> int:
    return os.getpid()


def logged_steps(run_dir: str) -> set[int]:
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            return {json.loads(line)["step"] for line in f if line.strip()}
    except (FileNotFoundError, json.JSONDecodeError):
        return set()


class Killer(threading.Thread):
    """For each (step, actor name) of `plan`, in order: once `step` is logged, SIGKILL that actor.
    `kills` holds (name, time.time() of the kill)."""

    def __init__(self, run_dir: str, plan: list[tuple[int, str]], delay_s: float = 0.0,
                 timeout_s: float = 900):
        super().__init__(daemon=True)
        self.run_dir, self.plan, self.delay_s, self.timeout_s = run_dir, plan, delay_s, timeout_s
        self.kills: list[tuple[str, float]] = []

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        for step, name in self.plan:
            while step not in logged_steps(self.run_dir) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(self.delay_s)
            pid = ray.get(ray.get_actor(name).__ray_call__.remote(_pid), timeout=60)
            os.kill(pid, signal.SIGKILL)
            self.kills.append((name, time.time()))


ROLES = re.compile(r"(engine|reward|env|reference|teacher|policy)-\d+")


def alive_actors() -> dict[str, int]:
    """The process id of every live actor of a run (by name: `engine-0`, `policy-1`, ...), from Ray's
    actor table: no call to the actors, which may be busy in a call of the run."""
    table = ray._private.state.actors(actor_state_name="ALIVE")
    return {a["Name"]: a["Pid"] for a in table.values() if ROLES.fullmatch(a["Name"]) and a["Pid"]}


class Chaos(threading.Thread):
    """From the first step logged until `last_step` is: every `every_s` seconds (each pause drawn
    from 0.5 to 1.5 times it), SIGKILL to a random live actor of a random role. Seeded, so that a run
    can be repeated; Ray's restarts and the run's recoveries go on meanwhile, so kills also land while
    the run recovers from the last one. `kills` holds one dict per kill: time (time.time()), actor,
    role, pid and the last step logged then."""

    def __init__(self, run_dir: str, last_step: int, every_s: float, seed: int, max_kills: int = 10**6,
                 timeout_s: float = 3600):
        super().__init__(daemon=True)
        self.run_dir, self.last_step, self.every_s, self.timeout_s = run_dir, last_step, every_s, timeout_s
        self.max_kills = max_kills
        self.rng = random.Random(seed)
        self.kills: list[dict] = []
        self.done = threading.Event()  # set to stop killing early (the run failed)

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not logged_steps(self.run_dir) and not self.done.wait(0.2):
            if time.monotonic() > deadline:
                return
        while time.monotonic() < deadline and len(self.kills) < self.max_kills:
            pause_until = time.monotonic() + self.every_s * self.rng.uniform(0.5, 1.5)
            while time.monotonic() < pause_until:
                if self.done.wait(0.2) or self.last_step in logged_steps(self.run_dir):
                    return
            self.kill_one()

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)

    def kill_one(self) -> None:
        alive = alive_actors()
        roles = sorted({name.rsplit("-", 1)[0] for name in alive})
        if not roles:
            return
        role = self.rng.choice(roles)
        name = self.rng.choice(sorted(n for n in alive if n.rsplit("-", 1)[0] == role))
        try:
            os.kill(alive[name], signal.SIGKILL)
        except ProcessLookupError:  # it died or restarted since the table was read: not a kill
            return
        self.kills.append({"time": time.time(), "actor": name, "role": role, "pid": alive[name],
                           "logged": max(logged_steps(self.run_dir), default=-1)})


def read_faults(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "faults.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def kill_noticed(kill: dict, faults: list[dict]) -> dict | None:
    """The line of faults.jsonl that recovered from `kill` (Chaos.kills): the first that restarted
    its actor and ended after it (a kill may be found while the run recovers from an earlier one)."""
    return next((f for f in faults if kill["actor"] in f["restarted"]
                 and f["detected"] + f["recovered_s"] >= kill["time"]), None)


def chaos_invariants(metrics: list[dict], steps: int, uninterrupted: list[dict]) -> dict[str, bool]:
    """What a run under Chaos must show at the end (metrics: its metrics.jsonl): every step logged
    once, and at each step the task source where `uninterrupted` (the metrics of a run without
    failures, or the rows it would log) had it and the same tasks trained (data/tasks_digest)."""
    trained = {m["step"]: m for m in metrics if "reward/mean" in m}
    keys = [k for k in ("data/epoch", "data/position", "data/tasks_digest") if k in uninterrupted[0]]
    return {
        "every_step_logged_once": sorted(m["step"] for m in metrics if "reward/mean" in m) == list(range(steps)),
        "same_tasks_and_position": all(trained.get(u["step"], {}).get(k) == u[k] for u in uninterrupted for k in keys),
    }
