"""Reward workers: the configured reward functions in a pool of actors, or in the driver.

Verifiers can be slow (math-verify, sandboxed code), so scoring is spread over `reward.num_workers`
processes; each runs rewards on its main thread, where math-verify's signal timeouts work. With
`reward.num_workers: 0` the driver scores (system/rewards/scorer.py), as cheap rewards allow. A reward
that raises stops the run with its `RewardError` (the reward and the sample it raised on).
"""

from __future__ import annotations

import ray

from actors.calls import actor_names, bounded_get
from system.rewards import get_reward
from system.rewards.scorer import RewardError, RewardScorer, RewardScores, score_each


@ray.remote
class RewardWorker:
    def __init__(self, names: list[str]):
        self.functions = {name: get_reward(name) for name in names}

    def score(self, completions: list[str], columns: dict[str, list], first: int = 0) -> dict[str, list]:
        return score_each(self.functions, completions, columns, first)


class RewardPool:
    """The reward side of a run, built from its reward config: `score` gives each function's scores and the
    combined reward (RewardScores). `options`: each worker's placement; `timeout_s`: the longest one
    batch's scoring may take (a dead or stuck worker: ActorFailure)."""

    def __init__(self, reward, options: list[dict], timeout_s: float = 1800.0):
        self.scorer = RewardScorer(reward)  # combines the workers' scores; scores itself without workers
        names, num_workers = list(reward.functions), reward.num_workers
        self.names = actor_names("reward", num_workers)
        self.workers = [RewardWorker.options(name=name, **opts).remote(names)
                        for name, opts in zip(self.names, options)]
        self.timeout_s = timeout_s

    def score(self, completions: list[str], columns: dict[str, list], group_size: int = 1) -> RewardScores:
        """Split the batch into one contiguous chunk per worker, at group boundaries (group-aware
        rewards such as `length` see whole groups); scores come back in order. Without workers, the
        whole batch is scored here."""
        if not self.workers:
            return self.scorer.score(completions, columns, group_size)
        groups, k = len(completions) // group_size, len(self.workers)
        bounds = [groups * i // k * group_size for i in range(k + 1)]
        calls = [
            (name, w.score.remote(completions[a:b], {c: v[a:b] for c, v in columns.items()}, a))
            for name, w, a, b in zip(self.names, self.workers, bounds, bounds[1:]) if b > a
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
        return self.scorer.combine(merged)
