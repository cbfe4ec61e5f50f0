"""What a rollout hands to a GRPO step, and the one interface every kind of rollout offers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class RolloutBatch:
    """One entry per sample, the `group_size` samples of one task (prompt or env seed) contiguous."""

    tokens: list[list[int]]  # prompt + everything after it, exactly as the engine saw/produced it
    loss_mask: list[list[int]]  # 1 on tokens the policy generated (never on prompts/observations)
    logprobs: list[list[float]]  # the engine's sampling log-prob per token (0 where mask is 0)
    rewards: list[Optional[float]]  # None: the sample could not be scored
    scores: dict[str, list[Optional[float]]]  # per reward function (or env statistic), for metrics
    finish_reasons: list[str]  # "stop" | "length" (generation limit) | "truncated" (context limit)
    texts: list[str]  # the model's text, for rewards, logs and reports
    versions: list[list[int]]  # per token: the policy version that sampled it (-1 where mask is 0)
    timings: dict[str, float] = field(default_factory=dict)  # timing/<phase>_s of the phases that made them
    tasks: list[str] = field(default_factory=list)  # per sample: its row's `task` column, if rows have one
    # per sample: the messages between its prompt and its text (a program teacher's failed tries and the
    # env's feedback, system/teachers/program.py); empty: none
    earlier: list[list[dict]] = field(default_factory=list)

    @property
    def response_lengths(self) -> list[int]:
        return [int(sum(m)) for m in self.loss_mask]


@dataclass
class TokenSequence:
    """One sample as a rollout builds it, turn by turn: the tokens the engine saw and produced."""

    tokens: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)  # 1 on the tokens the policy generated
    logprobs: list[float] = field(default_factory=list)  # the engine's sampling log-prob (0 where mask is 0)
    versions: list[int] = field(default_factory=list)  # the policy version of each generated token, else -1

    def extend(self, ids: list[int], mask: int, logprobs: Optional[list[float]] = None,
               versions: Optional[list[int]] = None) -> None:
        self.tokens += ids
        self.loss_mask += [mask] * len(ids)
        self.logprobs += logprobs if logprobs is not None else [0.0] * len(ids)
        self.versions += versions if versions is not None else [-1] * len(ids)


class Rollout(ABC):
    """Built once with the actors; the training loop and the evaluation call only this.

    Tasks are whatever a sample starts from (data rows, env seeds); `collect` turns tasks into
    scored samples, `n` per task."""

    correctness: Optional[str]  # the score that says a sample solved its task (1.0 = solved)
    max_response_tokens: int  # the most tokens one sample can generate: Dr. GRPO's length constant

    @abstractmethod
    def train_tasks(self, step_seed: int) -> list:
        """The tasks of one training step (`step_seed` differs per step and run)."""

    @abstractmethod
    def eval_tasks(self) -> list:
        """The held-out tasks: never trained on, the same at every evaluation of a run."""

    @abstractmethod
    def describe(self, tasks: list) -> list[str]:
        """A short text per task for the eval logs."""

    @abstractmethod
    def collect(self, tasks: list, seed: int, n: int, temperature: float, top_p: float | None = None) -> RolloutBatch:
        """`n` samples per task, scored, with the time each phase took; top_p None: rollout.top_p."""

    def state(self) -> dict:
        """What a checkpoint holds so that a resumed run takes the same next tasks."""
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def progress(self) -> dict[str, float]:
        """Metrics of where the task source stands (an epoch and position in the data)."""
        return {}
