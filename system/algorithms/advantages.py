"""Advantage estimators for GRPO-style training, in a registry (verl's `register_adv_est` idea).

Each estimator maps the scalar reward of every sample to one advantage per sample. Samples of
one prompt are contiguous groups of `group_size`. `valid` marks samples whose reward could be
computed (a reward of None): the others are left out of every statistic and get advantage 0.
"""

from __future__ import annotations

import torch

from system.registry import Registry

ADVANTAGES = Registry("advantage estimator")
register_advantage = ADVANTAGES.register
get_advantage = ADVANTAGES.get
EPS = 1e-6


def _group_stats(rewards: torch.Tensor, valid: torch.Tensor, group_size: int):
    """Mean and unbiased std of the valid rewards of each group, shaped [groups, 1]."""
    r, v = rewards.view(-1, group_size), valid.view(-1, group_size).float()
    count = v.sum(1, keepdim=True)
    mean = (r * v).sum(1, keepdim=True) / count.clamp(min=1)
    var = (((r - mean) ** 2) * v).sum(1, keepdim=True) / (count - 1).clamp(min=1)
    return r, v, mean, var.sqrt()


@register_advantage("grpo")
def grpo(rewards: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """DeepSeekMath GRPO: A_i = (r_i - mean(r_group)) / (std(r_group) + eps)."""
    r, v, mean, std = _group_stats(rewards, valid, group_size)
    return ((r - mean) / (std + EPS) * v).view(-1)


@register_advantage("drgrpo")
def drgrpo(rewards: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """Dr. GRPO: A_i = r_i - mean(r_group); no std division, which over-weights easy/hard groups."""
    r, v, mean, _ = _group_stats(rewards, valid, group_size)
    return ((r - mean) * v).view(-1)


@register_advantage("batch_std")
def batch_std(rewards: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """Group-mean baseline, scaled by the std of the batch's raw rewards (steadier than per-group std;
    TRL's scale_rewards="batch"). Not REINFORCE++-baseline: its std is of the group-centred rewards."""
    r, v, mean, _ = _group_stats(rewards, valid, group_size)
    return ((r - mean) / (rewards[valid].std() + EPS) * v).view(-1)


@register_advantage("reinforce_pp_baseline")
def reinforce_pp_baseline(rewards: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """REINFORCE++-baseline (Hu et al., arXiv 2501.03262): A' = r_i - mean(r_group), normalised over the
    batch, (A' - mean(A')) / std(A'), each valid sample counting once. mean(A') is 0 here (every group's
    centred rewards sum to 0); it is not in the per-token whitening of OpenRLHF, which weighs by length."""
    r, v, mean, _ = _group_stats(rewards, valid, group_size)
    centred = ((r - mean) * v).view(-1)
    return centred / (centred[valid].std() + EPS)


@register_advantage("rloo")
def rloo(rewards: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO (Kool et al. 2019; Ahmadian et al. 2024): A_i = r_i - mean of the group's other valid rewards,
    = n / (n - 1) * (r_i - mean(r_group)) with n valid samples; 0 for a sample alone in its group."""
    r, v, mean, _ = _group_stats(rewards, valid, group_size)
    n = v.sum(1, keepdim=True)
    return ((r - mean) * n / (n - 1).clamp(min=1) * v * (n > 1)).view(-1)


def zero_variance_groups(rewards: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """Per sample: True where all valid samples of its group got the same reward (no signal)."""
    r, v, _, std = _group_stats(rewards, valid, group_size)
    return (std.view(-1) < EPS).repeat_interleave(group_size)
