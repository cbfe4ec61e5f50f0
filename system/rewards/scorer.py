"""Scoring a batch: every configured reward function's scores and their combination, in one object.

A rollout asks `rewards.score(completions, columns, group_size)` and gets `RewardScores` back; what
the functions are, their weights, `reward.mode` and `reward.gate` stay on this side. `RewardScorer`
does it in this process; actors/reward.py's RewardPool runs the functions in worker actors instead
(`reward.num_workers`), and combines their scores with a RewardScorer, so the rule is in one place.
A reward that raises stops the run with a `RewardError` naming the reward and the sample it raised
on: a raising reward is a bug to fix, and scoring around it would train on a silent hole. So does one
that returns anything but one finite number or None per sample (NaN, inf, a string, a list, too few
scores): a NaN would reach the advantages, and through them every weight, without a word.
"""

from __future__ import annotations

import math
import numbers
import traceback
from dataclasses import dataclass
from typing import Callable, Optional

from system.rewards.combine import combine_rewards
from system.rewards.registry import get_reward


class RewardError(RuntimeError):
    """A reward function raised or returned what is no score; the message names it, the sample and
    that sample's columns."""


@dataclass
class RewardScores:
    """A batch's rewards, sample by sample (None: cannot be scored)."""

    parts: dict[str, list[Optional[float]]]  # each function's scores, logged as reward/<name>/mean
    total: list[Optional[float]]  # their combination (reward.mode): what advantages are computed from


def run_reward(name: str, fn: Callable, completions: list[str], columns: dict[str, list],
               first: int = 0) -> list:
    """`fn`'s scores of the batch. If it raises, it is run again on each sample alone to find the first
    one that raises (sample `first + i` of the step's batch), and the error names that sample."""
    try:
        scores = fn(completions, **columns)
    except Exception as batch_error:  # noqa: BLE001 - any error of user code becomes a RewardError
        for i, completion in enumerate(completions):
            try:
                fn([completion], **{c: [v[i]] for c, v in columns.items()})
            except Exception as e:  # noqa: BLE001
                raise RewardError(f"reward '{name}' raised on sample {first + i} of the batch, "
                                  f"columns {_short_columns(columns, i)}, completion {completion[:80]!r}:\n"
                                  f"{_last_frames(e)}") from None
        last = first + len(completions) - 1
        raise RewardError(f"reward '{name}' raised on samples {first}-{last} together, though on none of "
                          f"them alone:\n{_last_frames(batch_error)}") from None
    return checked_scores(name, scores, completions, columns, first)


def checked_scores(name: str, scores, completions: list[str], columns: dict[str, list], first: int) -> list:
    """`scores` as floats and Nones, one per completion; a RewardError naming the reward, the value and
    its sample for anything else (docs/adding-a-reward.md: a finite number, or None for "cannot score")."""
    listed = hasattr(scores, "__len__") and not isinstance(scores, (str, bytes, dict))
    if not listed or len(scores) != len(completions):
        got = f"{len(scores)} scores" if listed else f"a {type(scores).__name__}"
        raise RewardError(f"reward '{name}' returned {got} ({str(scores)[:80]}) for {len(completions)} completions "
                          f"(samples {first}-{first + len(completions) - 1}): a reward returns a list of one score "
                          "per completion")
    out = []
    for i, score in enumerate(scores):
        if score is not None and not (isinstance(score, numbers.Real) and math.isfinite(score)):
            raise RewardError(f"reward '{name}' returned {score!r:.80} ({type(score).__name__}) for sample "
                              f"{first + i} of the batch, columns {_short_columns(columns, i)}, completion "
                              f"{completions[i][:80]!r}: a score is a finite number, or None when the sample "
                              "cannot be scored")
        out.append(None if score is None else float(score))
    return out


def _short_columns(columns: dict[str, list], i: int) -> str:
    return "{" + ", ".join(f"{c}: {repr(v[i])[:60]}" for c, v in columns.items()) + "}"


def _last_frames(error: Exception) -> str:
    return "".join(traceback.format_exception(error)[-4:]).rstrip()


def score_each(functions: dict[str, Callable], completions: list[str], columns: dict[str, list],
               first: int = 0) -> dict[str, list]:
    """Every function's scores of the batch; `first`: the index of its first sample in the step's batch."""
    return {name: run_reward(name, fn, completions, columns, first) for name, fn in functions.items()}


class RewardScorer:
    """`reward`: a run config's reward section (functions with their weights, mode, gate)."""

    def __init__(self, reward):
        self.functions = {name: get_reward(name) for name in reward.functions}
        self.weights, self.mode, self.gate = dict(reward.functions), reward.mode, reward.gate

    def score(self, completions: list[str], columns: dict[str, list], group_size: int = 1) -> RewardScores:
        """The batch's rewards, scored here (`group_size` matters only where a batch is split)."""
        return self.combine(score_each(self.functions, completions, columns))

    def combine(self, parts: dict[str, list]) -> RewardScores:
        return RewardScores(parts, combine_rewards(parts, self.weights, self.mode, self.gate))
