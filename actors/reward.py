"""Reward workers: a pool of actors scoring completions with the configured reward functions.

Verifiers can be slow (math-verify, sandboxed code), so scoring is spread over several
processes; each runs rewards on its main thread, where math-verify's signal timeouts work.
A reward that raises stops the run with a `RewardError` naming the reward and the sample it
raised on: a raising reward is a bug to fix, and scoring around it would train on a silent hole.
"""

from __future__ import annotations

import traceback

import ray

from actors.calls import bounded_get
from system.rewards import get_reward


class RewardError(RuntimeError):
    """A reward function raised; the message names it, the sample and that sample's columns."""


def run_reward(name: str, fn, completions: list[str], columns: dict[str, list], first: int = 0) -> list:
    """`fn`'s scores of the batch. If it raises, it is run again on each sample alone to find the first
    one that raises (sample `first + i` of the step's batch), and the error names that sample."""
    try:
        return fn(completions, **columns)
    except Exception as batch_error:  # noqa: BLE001 - any error of user code becomes a RewardError
        for i, completion in enumerate(completions):
            try:
                fn([completion], **{c: [v[i]] for c, v in columns.items()})
            except Exception as e:  # noqa: BLE001
                raise RewardError(f"reward '{name}' raised on sample {first + i} of the batch, "
                                  f"columns {_short_columns(columns, i)}, completion {completion[:80]!r}:\n"
                                  f"{_last_frames(e)}") from None
        raise RewardError(f"reward '{name}' raised on samples {first}-{first + len(completions) - 1} together, "
                          f"though on none of them alone:\n{_last_frames(batch_error)}") from None


def _short_columns(columns: dict[str, list], i: int) -> str:
    return "{" + ", ".join(f"{c}: {repr(v[i])[:60]}" for c, v in columns.items()) + "}"


def _last_frames(error: Exception) -> str:
    return "".join(traceback.format_exception(error)[-4:]).rstrip()


@ray.remote
class RewardWorker:
    def __init__(self, names: list[str]):
        self.functions = {name: get_reward(name) for name in names}

    def score(self, completions: list[str], columns: dict[str, list], first: int = 0) -> dict[str, list]:
        return {name: run_reward(name, fn, completions, columns, first) for name, fn in self.functions.items()}


class RewardPool:
    """`timeout_s`: the longest one batch's scoring may take (a dead or stuck worker: ActorFailure)."""

    def __init__(self, names: list[str], num_workers: int, options: list[dict], timeout_s: float = 1800.0):
        self.workers = [RewardWorker.options(name=f"reward-{i}", **options[i]).remote(names) for i in range(num_workers)]
        self.timeout_s = timeout_s

    def score(self, completions: list[str], columns: dict[str, list], group_size: int = 1) -> dict[str, list]:
        """Split the batch into one contiguous chunk per worker, at group boundaries (group-aware
        rewards such as `length` see whole groups); scores come back in order."""
        groups, k = len(completions) // group_size, len(self.workers)
        bounds = [groups * i // k * group_size for i in range(k + 1)]
        calls = [
            (f"reward-{i}", w.score.remote(completions[a:b], {c: v[a:b] for c, v in columns.items()}, a))
            for i, (w, a, b) in enumerate(zip(self.workers, bounds, bounds[1:])) if b > a
        ]
        try:
            parts = bounded_get(calls, "reward", self.timeout_s)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, RewardError):
                raise e.cause from None  # the reward's own message, not Ray's wrapper around it
            raise
        merged: dict[str, list] = {}
        for part in parts:
            for name, scores in part.items():
                merged.setdefault(name, []).extend(scores)
        return merged
