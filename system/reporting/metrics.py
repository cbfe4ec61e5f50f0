"""Where step metrics go: `metrics.jsonl` in the run directory (always), the trackers that
`logging.trackers` names (wandb, TensorBoard: system/reporting/trackers.py), and sinks such as the
Ray dashboard's gauges (actors/dashboard.py), which system/ cannot build itself.

Keys use `/` separators: `reward/mean`, `timing/generate_s`, `sync/checksum_ok`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager

from system.reporting.trackers import Tracker


class MetricsLogger:
    """One record per step: to metrics.jsonl first, the run's own copy, then to each tracker and sink."""

    def __init__(self, run_dir: str, trackers: Sequence[Tracker] = (),
                 sinks: Sequence[Callable[[dict, int], None]] = ()):
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.trackers = list(trackers)
        self.sinks = list(sinks)

    def log(self, metrics: dict, step: int) -> None:
        values = {k: _plain(v) for k, v in metrics.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        for tracker in self.trackers:
            tracker.log(values, step)
        for sink in self.sinks:
            sink(values, step)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def read_metrics(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def next_step(run_dir: str) -> int:
    """The step after the last one metrics.jsonl holds: where a resumed run's logging starts (0: none)."""
    if not os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
        return 0
    return max((r["step"] + 1 for r in read_metrics(run_dir)), default=0)


def drop_metrics_from(run_dir: str, step: int) -> None:
    """Forget the records of `step` and later: a run that goes back to `step` logs them again.
    Before the first record there is nothing to forget (a policy rank that dies in step 0)."""
    if not os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
        return
    kept = [r for r in read_metrics(run_dir) if r["step"] < step]
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)


@contextmanager
def timed(timings: dict, phase: str):
    """Adds the wall time of the block to `timings["timing/<phase>_s"]`."""
    start = time.perf_counter()
    yield
    key = f"timing/{phase}_s"
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - start
