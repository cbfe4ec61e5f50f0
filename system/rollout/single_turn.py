"""Single-turn rollout: a prompt from the data set, `n` completions, every reward function's score."""

from __future__ import annotations

from typing import Optional

from system.data.prompts import encode_prompt, prompt_budget
from system.data.sampler import PromptSampler
from system.reporting.metrics import timed
from system.rewards import RewardScores, correctness_reward
from system.rollout.base import Rollout, RolloutBatch


def score_samples(rewards, rows: list[dict], texts: list[str], completion_tokens: list[int],
                  n: int) -> RewardScores:
    """The rewards of `n` samples per row (contiguous), judged with their row's columns and their length."""
    columns = {key: [row[key] for row in rows for _ in range(n)] for key in rows[0] if key != "messages"}
    columns["completion_tokens"] = completion_tokens  # for length-shaped rewards
    return rewards.score(texts, columns, n)


class SingleTurnRollout(Rollout):
    """`engines.generate(prompts, n, temperature, seed)` samples; `rewards.score(texts, columns, n)`
    scores them, RewardScores back (actors/vllm_engine.py; actors/reward.py). `cfg`: a run config with
    `data`, `rollout` and `reward` sections. Training takes its prompts from `sampler`; distillation,
    which picks its own problems, calls `collect` only."""

    def __init__(self, engines, rewards, tokenizer, cfg, sampler: Optional[PromptSampler] = None,
                 eval_rows: list[dict] = ()):
        self.engines, self.rewards, self.tokenizer, self.cfg = engines, rewards, tokenizer, cfg
        self.sampler, self.eval_rows = sampler, list(eval_rows)
        self.correctness = correctness_reward(cfg.reward.functions)
        self.max_response_tokens = cfg.rollout.max_new_tokens
        self.truncated_prompts = 0  # cut to prompt_budget (data.overlong_prompts=truncate_left), so far

    def train_tasks(self, step_seed: int) -> list[dict]:
        return self.sampler.next_batch()

    def eval_tasks(self) -> list[dict]:
        return self.eval_rows

    def describe(self, rows: list[dict]) -> list[str]:
        return [row["messages"][-1]["content"] for row in rows]

    def collect(self, rows: list[dict], seed: int, n: int, temperature: float, top_p: float | None = None
                ) -> RolloutBatch:
        """`n` samples per row (contiguous), scored by every configured reward function."""
        timings: dict[str, float] = {}
        data = self.cfg.data
        encoded = [encode_prompt(self.tokenizer, row["messages"], data.response_prefix, data.prompt_format)
                   for row in rows]
        budget = prompt_budget(self.cfg)  # longer prompts are dropped at load time, or kept by their end here
        self.truncated_prompts += sum(len(p) > budget for p in encoded)
        prompts = [p[-budget:] for p in encoded]
        with timed(timings, "generate"):
            groups = self.engines.generate(prompts, n, temperature, seed, top_p)
        samples = [(p, s) for p, group in zip(prompts, groups) for s in group]
        texts = [data.response_prefix + s["text"] for _, s in samples]  # the whole reply: what rewards judge
        with timed(timings, "reward"):
            scored = score_samples(self.rewards, rows, texts, [len(s["response"]) for _, s in samples], n)
        return RolloutBatch(
            tokens=[p + s["response"] for p, s in samples],
            loss_mask=[[0] * len(p) + [1] * len(s["response"]) for p, s in samples],
            logprobs=[[0.0] * len(p) + s["logprobs"] for p, s in samples],
            rewards=scored.total,
            scores=scored.parts,
            finish_reasons=[s["finish_reason"] for _, s in samples],
            texts=texts,
            versions=[[-1] * len(p) + s["versions"] for p, s in samples],
            timings=timings,
            tasks=[str(row["task"]) for row in rows for _ in range(n)] if all("task" in row for row in rows) else [],
        )

    def state(self) -> dict:
        return self.sampler.state()

    def load_state(self, state: dict) -> None:
        self.sampler.load_state(state)

    def progress(self) -> dict[str, float]:
        return {"data/epoch": self.sampler.epoch, "data/position": self.sampler.position,
                "data/truncated_prompts": self.truncated_prompts}
