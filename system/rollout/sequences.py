"""Training sequences from rollouts, and how a step's sequences are cut for the trainer.

A sequence is the exact token ids the engine saw and produced (never re-tokenised text):
`tokens`, `loss_mask` (1 on tokens the policy generated), `rollout_logp` (the engine's
sampling log-prob of each generated token), and the scalar `advantage`. All per-token
tensors are indexed by token position (see system/logprobs.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

import torch

from system.algorithms.losses import token_weights


@dataclass
class Rollouts:
    """What a rollout phase hands to the update: one entry per sample, the `group_size`
    samples of one prompt (or env seed) contiguous. Single- and multi-turn rollouts both fill it."""

    tokens: list[list[int]]  # prompt + everything after it, exactly as the engine saw/produced it
    loss_mask: list[list[int]]  # 1 on tokens the policy generated (never on prompts/observations)
    logprobs: list[list[float]]  # the engine's sampling log-prob per token (0 where mask is 0)
    rewards: list[Optional[float]]  # None: the sample could not be scored
    scores: dict[str, list[Optional[float]]]  # per reward function (or env statistic), for metrics
    finish_reasons: list[str]  # "stop" | "length" (generation limit) | "truncated" (context limit)
    texts: list[str]  # the model's text, for rewards, logs and reports

    @property
    def response_lengths(self) -> list[int]:
        return [int(sum(m)) for m in self.loss_mask]


def make_sequence(tokens: list[int], loss_mask: list[int], logprobs: list[float]) -> dict:
    return {
        "tokens": torch.tensor(tokens, dtype=torch.long),
        "loss_mask": torch.tensor(loss_mask, dtype=torch.float32),
        "rollout_logp": torch.tensor(logprobs, dtype=torch.float32),
        "advantage": 0.0,
    }


def split_for_training(seqs: list[dict], num_minibatches: int, num_ranks: int, loss_agg: str,
                       max_response_len: int, seed: int) -> list[list[list[dict]]]:
    """Shuffle, cut into mini-batches, give each token its loss weight within its mini-batch,
    then deal each mini-batch round-robin over the data-parallel ranks.
    Returns shards[rank][minibatch] = list of sequences."""
    order = list(range(len(seqs)))
    random.Random(seed).shuffle(order)
    size = len(seqs) // num_minibatches
    shards: list[list[list[dict]]] = [[] for _ in range(num_ranks)]
    for m in range(num_minibatches):
        minibatch = [seqs[i] for i in order[m * size:(m + 1) * size]]
        mask = torch.nn.utils.rnn.pad_sequence([s["loss_mask"] for s in minibatch], batch_first=True)
        weights = token_weights(mask, loss_agg, max_response_len)
        for row, s in enumerate(minibatch):
            s["weights"] = weights[row, : len(s["tokens"])].clone()
        for rank in range(num_ranks):
            shards[rank].append(minibatch[rank::num_ranks])
    return shards
