"""Held-out evaluation as DeepSeek-R1 reports it: pass@1 from n samples per problem, greedy accuracy beside it.

pass@k is the unbiased estimator of Chen et al. (2021): with n samples of which c are
correct, pass@k = 1 - C(n-c, k) / C(n, k), the chance that k samples drawn without
replacement contain a correct one; averaged over problems. Its k = 1 case is R1's pass@1, the
mean correctness of the n samples (R1: n = 8 or more at T = 0.6, top-p 0.95, eval.* settings),
which greedy decoding's single answer (eval/accuracy) measures with more noise.

Rows that name their `task` (a mixture of tasks, system/data/reasoning_gym.py) get each figure per
task too: eval/<task>/greedy and eval/<task>/pass@k here, reward/<task>/mean and
reward/<task>/accuracy for training batches (`task_reward_metrics`).
"""

from __future__ import annotations

import json
import os

import numpy as np

from system.rewards.format import make_format
from system.rollout.base import RolloutBatch

R1_FORMAT = make_format()


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that k of n samples, c of them correct, hold a correct one: c / n at k = 1."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def solved(scores: dict, name: str | None, rewards: list) -> list[bool]:
    """Per sample: the score that decides correctness (a reward registered with correctness=True,
    or env/success) is 1.0; without one, the combined reward is >= 1."""
    values = scores[name] if name else rewards
    return [v is not None and v >= 1.0 for v in values]


def eval_metrics(greedy: RolloutBatch, sampled: RolloutBatch, n: int, ks: list[int], correctness: str | None) -> dict:
    """greedy: one sample per problem at temperature 0; sampled: n per problem, contiguous."""
    greedy_ok = solved(greedy.scores, correctness, greedy.rewards)
    scored = [r for r in greedy.rewards if r is not None]
    lengths = greedy.response_lengths
    metrics = {
        "eval/reward_mean": sum(scored) / max(len(scored), 1),
        "eval/accuracy": sum(greedy_ok) / len(greedy_ok),
        "eval/length_mean": sum(lengths) / max(len(lengths), 1),  # generated tokens per greedy reply
        # replies in R1's <think>...</think><answer>...</answer> layout (0 for tasks that ask for none)
        "eval/format_rate": float(np.mean(R1_FORMAT(greedy.texts))),
    }
    sampled_ok = solved(sampled.scores, correctness, sampled.rewards)
    per_problem = [sum(sampled_ok[i:i + n]) for i in range(0, len(sampled_ok), n)]
    for k in ks:
        metrics[f"eval/pass@{k}"] = float(np.mean([pass_at_k(n, c, k) for c in per_problem]))
    for task, problems in by_task(greedy.tasks).items():
        metrics[f"eval/{task}/greedy"] = float(np.mean([greedy_ok[p] for p in problems]))
        for k in ks:
            metrics[f"eval/{task}/pass@{k}"] = float(np.mean([pass_at_k(n, per_problem[p], k) for p in problems]))
    for name, values in greedy.scores.items():  # env statistics of the greedy episodes: eval/turns, ...
        if name.startswith("env/") and name != correctness:
            metrics["eval/" + name[len("env/"):]] = float(np.mean(values))
    return metrics


def by_task(tasks: list[str]) -> dict[str, list[int]]:
    """The positions of each task's entries in `tasks` (empty: the rows name no task)."""
    positions: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        positions.setdefault(task, []).append(i)
    return positions


def task_reward_metrics(batch: RolloutBatch, correctness: str | None) -> dict:
    """reward/<task>/mean (of the scored samples) and reward/<task>/accuracy of a training batch."""
    ok = solved(batch.scores, correctness, batch.rewards)
    metrics = {}
    for task, samples in by_task(batch.tasks).items():
        scored = [batch.rewards[i] for i in samples if batch.rewards[i] is not None]
        metrics[f"reward/{task}/mean"] = sum(scored) / len(scored) if scored else 0.0
        metrics[f"reward/{task}/accuracy"] = sum(ok[i] for i in samples) / len(samples)
    return metrics


def write_samples(run_dir: str, step: int, prompts: list[str], completions: list[str], rewards: list,
                  correct: list[bool], limit: int) -> str:
    path = os.path.join(run_dir, "eval", f"step_{step:06d}.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for row in list(zip(prompts, completions, rewards, correct))[:limit]:
            f.write(json.dumps(dict(zip(("prompt", "completion", "reward", "correct"), row))) + "\n")
    return path
