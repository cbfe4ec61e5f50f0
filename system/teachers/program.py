"""A program teacher with the sampling interface of a model teacher, for distillation.

`collect(rows, seed, n, temperature)` returns a `RolloutBatch` as `SingleTurnRollout.collect` does,
so the distill loop keeps, counts and writes the traces of a program exactly as a model's:
the traces are tokenised after the prompt (their lengths are what SFT will see) and scored by
the same reward workers. A row the program cannot solve gives an empty reply, which the
verifier fails: it is counted as unsolved, not dropped silently. A teacher that writes episodes
(teachers/episodes.py) has its last reply verified and tokenised; what came before it rides along.
"""

from __future__ import annotations

import functools
import random

from system.data.prompts import encode_prompt
from system.reporting.metrics import timed
from system.rewards import correctness_reward
from system.rollout.base import RolloutBatch
from system.rollout.single_turn import score_samples
from system.seeds import derive_seed
from system.teachers import TEACHERS


class ProgramTeacher:
    """`name`: a registered teacher or a `package.module:fn` path; `rewards.score` verifies."""

    def __init__(self, name: str, rewards, tokenizer, cfg):
        self.write = functools.partial(TEACHERS.get(name), **cfg.teacher_args)
        self.rewards, self.tokenizer, self.cfg = rewards, tokenizer, cfg
        self.correctness = correctness_reward(cfg.reward.functions)

    def collect(self, rows: list[dict], seed: int, n: int, temperature: float = 1.0) -> RolloutBatch:
        """`n` traces per row (contiguous), each from its own rng; `temperature` is a model's knob, unused.
        The texts are each sample's verified last reply, `earlier` what came before it."""
        timings: dict[str, float] = {}
        data = self.cfg.data
        with timed(timings, "generate"):
            prompts = [encode_prompt(self.tokenizer, row["messages"], data.response_prefix,
                                     data.prompt_format) for row in rows]
            written = [self.write(row, random.Random(derive_seed(seed, "teacher", i * n + j))) or ""
                       for i, row in enumerate(rows) for j in range(n)]
            chats = [w if isinstance(w, list) else [{"role": "assistant", "content": w}] for w in written]
            texts = [chat[-1]["content"] for chat in chats]
            # the prefix is part of the prompt: the student is taught the reply after it
            replies = [self.tokenizer(t.removeprefix(data.response_prefix),
                                      add_special_tokens=False)["input_ids"] for t in texts]
        with timed(timings, "reward"):
            scored = score_samples(self.rewards, rows, texts, [len(r) for r in replies], n)
        starts = [p for p in prompts for _ in range(n)]
        return RolloutBatch(
            tokens=[p + r for p, r in zip(starts, replies)],
            loss_mask=[[0] * len(p) + [1] * len(r) for p, r in zip(starts, replies)],
            logprobs=[[0.0] * (len(p) + len(r)) for p, r in zip(starts, replies)],
            rewards=scored.total,
            scores=scored.parts,
            finish_reasons=["stop"] * len(texts),
            texts=texts,
            versions=[[-1] * (len(p) + len(r)) for p, r in zip(starts, replies)],
            timings=timings,
            earlier=[chat[:-1] for chat in chats],
        )
