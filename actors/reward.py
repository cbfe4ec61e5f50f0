"""Reward workers: a pool of actors scoring completions with the configured reward functions.

Verifiers can be slow (math-verify, sandboxed code), so scoring is spread over several
processes; each runs rewards on its main thread, where math-verify's signal timeouts work.
"""

from __future__ import annotations

import ray

from system.rewards import get_reward


@ray.remote
class RewardWorker:
    def __init__(self, names: list[str]):
        self.functions = {name: get_reward(name) for name in names}

    def score(self, completions: list[str], columns: dict[str, list]) -> dict[str, list]:
        return {name: fn(completions, **columns) for name, fn in self.functions.items()}


class RewardPool:
    def __init__(self, names: list[str], num_workers: int, options: list[dict]):
        self.workers = [RewardWorker.options(name=f"reward-{i}", **options[i]).remote(names) for i in range(num_workers)]

    def score(self, completions: list[str], columns: dict[str, list], group_size: int = 1) -> dict[str, list]:
        """Split the batch into one contiguous chunk per worker, at group boundaries (group-aware
        rewards such as `length` see whole groups); scores come back in order."""
        groups, k = len(completions) // group_size, len(self.workers)
        bounds = [groups * i // k * group_size for i in range(k + 1)]
        futures = [
            w.score.remote(completions[a:b], {c: v[a:b] for c, v in columns.items()})
            for w, a, b in zip(self.workers, bounds, bounds[1:]) if b > a
        ]
        merged: dict[str, list] = {}
        for part in ray.get(futures):
            for name, scores in part.items():
                merged.setdefault(name, []).extend(scores)
        return merged
