"""Killing a run's actors from outside, as a dying process or node would: SIGKILL to an actor's
process once the run has logged a given step, so that the kill lands in the middle of the next
step. Used by tests/test_faults_e2e.py and bench/faults.py."""

from __future__ import annotations

import json
import os
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


def read_faults(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "faults.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
