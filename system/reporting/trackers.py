"""The experiment trackers that step metrics go to besides `metrics.jsonl`: `logging.trackers` names them.

    wandb        offline by default (`wandb sync` later); `logging.wandb_mode=disabled` turns it off
                 whatever `trackers` says.
    tensorboard  event files in RUN_DIR/tensorboard/ (`tensorboard --logdir runs/`). Numbers only:
                 TensorBoard keeps a scalar as a 32-bit float (a bool as 0/1) and has no place for the
                 strings and lists that metrics.jsonl also holds, so those are skipped.

A tracker has `log(metrics, step)` and `close()`; each is imported only when a run asks for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol


class Tracker(Protocol):
    def log(self, metrics: dict, step: int) -> None: ...

    def close(self) -> None: ...


class WandbTracker:
    def __init__(self, run_dir: str, config: dict, mode: str, project: str, run_name: str):
        import wandb

        self.run = wandb.init(project=project, name=run_name, dir=run_dir, config=config, mode=mode,
                              reinit=True)

    def log(self, metrics: dict, step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class TensorBoardTracker:
    """Shows what metrics.jsonl holds. A run that goes back (a resume, or a restart from a checkpoint in
    the same process) logs steps again: like `drop_metrics_from` for metrics.jsonl, the writer then opens
    a new event file with `purge_step`, which tells readers to hide the earlier events of those steps."""

    def __init__(self, run_dir: str, next_step: int):
        self.dir = os.path.join(run_dir, "tensorboard")
        self._open(purge_step=next_step)

    def _open(self, purge_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(self.dir, purge_step=purge_step)
        self.last_step = purge_step - 1

    def log(self, metrics: dict, step: int) -> None:
        if step <= self.last_step:
            self.writer.close()
            self._open(purge_step=step)
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()  # a killed run keeps every step it logged, as metrics.jsonl does
        self.last_step = step

    def close(self) -> None:
        self.writer.close()


def open_wandb(logging, run_dir: str, config: dict, run_name: str, next_step: int) -> Tracker | None:
    if logging.wandb_mode == "disabled":
        return None
    return WandbTracker(run_dir, config, logging.wandb_mode, logging.wandb_project, run_name)


def open_tensorboard(logging, run_dir: str, config: dict, run_name: str, next_step: int) -> Tracker:
    return TensorBoardTracker(run_dir, next_step)


# name in `logging.trackers` -> (logging config, run dir, run config, run name, first step to log) -> tracker
TRACKERS: dict[str, Callable[..., Tracker | None]] = {"wandb": open_wandb, "tensorboard": open_tensorboard}


def open_trackers(logging, run_dir: str, config: dict, run_name: str, next_step: int) -> list[Tracker]:
    """The trackers `logging.trackers` names (a LoggingConfig); `next_step`: the step after those that
    metrics.jsonl holds already (0 for a new run)."""
    trackers = [TRACKERS[name](logging, run_dir, config, run_name, next_step) for name in logging.trackers]
    return [t for t in trackers if t is not None]
