"""The training sample of a GRPO step, and how a step's samples are cut for the trainer.

A sample is the exact token ids the engine saw and produced (never re-tokenised text), with
every per-token field indexed by token position (see logprobs.py). Its fields are all listed
here, filled in this order: the rollout (tokens, mask, sampling log-probs), the driver
(reference and teacher log-probs, advantage), `split_for_training` (loss weights), the trainer
(old log-probs).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

import torch

from system.algorithms.losses import token_weights


@dataclass
class TrainingSample:
    tokens: torch.Tensor  # long [L]: prompt + everything after it
    loss_mask: torch.Tensor  # float [L]: 1 on the tokens the policy generated and is trained on
    rollout_logp: torch.Tensor  # float [L]: the engine's sampling log-prob of each generated token
    advantage: float = 0.0  # one per sample (the advantage estimator's); per token with a teacher (grpo.py)
    ref_logp: Optional[torch.Tensor] = None  # [L] under the reference model, when a KL term is on
    teacher_logp: Optional[torch.Tensor] = None  # [L] under the teacher, in on-policy distillation
    weights: Optional[torch.Tensor] = None  # [L] loss weight of each token within its mini-batch
    old_logp: Optional[torch.Tensor] = None  # [L] the trainer's, before its first update (multi-update PPO)

    @classmethod
    def from_rollout(cls, tokens: list[int], loss_mask: list[int], logprobs: list[float]) -> "TrainingSample":
        return cls(torch.tensor(tokens, dtype=torch.long), torch.tensor(loss_mask, dtype=torch.float32),
                   torch.tensor(logprobs, dtype=torch.float32))


def split_for_training(samples: list[TrainingSample], num_minibatches: int, num_ranks: int, loss_agg: str,
                       max_response_len: int, seed: int,
                       share_prefixes: bool = False) -> list[list[list[TrainingSample]]]:
    """Shuffle, cut into mini-batches, give each token its loss weight within its mini-batch,
    then deal each mini-batch round-robin over the data-parallel ranks (with `share_prefixes`, in runs
    of its samples in token order instead, so that a rank gets the samples of a group together).
    Returns shards[rank][minibatch] = list of samples."""
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    size = len(samples) // num_minibatches
    shards: list[list[list[TrainingSample]]] = [[] for _ in range(num_ranks)]
    for m in range(num_minibatches):
        minibatch = [samples[i] for i in order[m * size:(m + 1) * size]]
        mask = torch.nn.utils.rnn.pad_sequence([s.loss_mask for s in minibatch], batch_first=True)
        weights = token_weights(mask, loss_agg, max_response_len)
        for row, s in enumerate(minibatch):
            s.weights = weights[row, : len(s.tokens)].clone()
        if share_prefixes:
            minibatch = sorted(minibatch, key=lambda s: s.tokens.tolist())
            for rank in range(num_ranks):
                shards[rank].append(minibatch[len(minibatch) * rank // num_ranks:
                                              len(minibatch) * (rank + 1) // num_ranks])
        else:
            for rank in range(num_ranks):
                shards[rank].append(minibatch[rank::num_ranks])
    return shards
