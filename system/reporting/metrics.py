"""Where step metrics go: `metrics.jsonl` in the run directory (always), wandb (offline by
default: no network needed, `wandb sync` later), and any extra sinks such as the Ray dashboard.

Keys use `/` separators: `reward/mean`, `timing/generate_s`, `sync/checksum_ok`.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from typing import Callable


class MetricsLogger:
    def __init__(self, run_dir: str, config: dict, wandb_mode: str, project: str, run_name: str,
                 extra_sinks: list[Callable[[dict, int], None]] | None = None):
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.extra_sinks = extra_sinks or []
        self.wandb_run = None
        if wandb_mode != "disabled":
            import wandb

            self.wandb_run = wandb.init(project=project, name=run_name, dir=run_dir, config=config,
                                        mode=wandb_mode, reinit=True)

    def log(self, metrics: dict, step: int) -> None:
        record = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=step)
        for sink in self.extra_sinks:
            sink(metrics, step)

    def close(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def read_metrics(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def drop_metrics_from(run_dir: str, step: int) -> None:
    """Forget the records of `step` and later: a run that goes back to `step` logs them again."""
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
