"""Training sequences from rollouts, and how a step's sequences are cut for the trainer.

A sequence is the exact token ids the engine saw and produced (never re-tokenised text):
`tokens`, `loss_mask` (1 on tokens the policy generated), `rollout_logp` (the engine's
sampling log-prob of each generated token), and the scalar `advantage`. All per-token
tensors are indexed by token position (see system/logprobs.py).
"""

from __future__ import annotations

import random

import torch

from system.algorithms.losses import token_weights


def make_sequence(prompt: list[int], response: list[int], logprobs: list[float], advantage: float) -> dict:
    n_prompt, n_resp = len(prompt), len(response)
    return {
        "tokens": torch.tensor(prompt + response, dtype=torch.long),
        "loss_mask": torch.tensor([0] * n_prompt + [1] * n_resp, dtype=torch.float32),
        "rollout_logp": torch.tensor([0.0] * n_prompt + list(logprobs), dtype=torch.float32),
        "advantage": float(advantage),
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
