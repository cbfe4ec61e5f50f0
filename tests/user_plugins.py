"""What a user's own package holds, loaded by `module:function` path from the config: rewards and
an advantage estimator, none of them registered in this project.

A random tiny model never writes a correct answer, so the end-to-end tests reward something
it does vary in, to get a learning signal through the real stack."""

import torch

from system.rewards import register_reward


def response_length(completions: list[str], **columns) -> list[float]:
    return [min(len(c), 200) / 200 for c in completions]


@register_reward("user_even_length", correctness=True)
def even_length(completions: list[str], **columns) -> list[float]:
    """Accepts about half of any model's completions: a verifier (distillation tests) and a
    user's correctness reward (eval accuracy and reward/accuracy follow it)."""
    return [float(len(c) % 2 == 0) for c in completions]


def leave_one_out(rewards: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO: each sample's baseline is the mean reward of the other samples of its group."""
    r, v = rewards.view(-1, group_size), valid.view(-1, group_size).float()
    others = (v.sum(1, keepdim=True) - v).clamp(min=1)
    baseline = ((r * v).sum(1, keepdim=True) - r * v) / others
    return ((r - baseline) * v).view(-1)
