"""The policy loss of a mini-batch slice and how it is averaged over tokens.

Every aggregation mode is written as one weight per token, computed over the whole mini-batch
*before* it is split across data-parallel ranks and micro-batches. The loss of any slice is then
just sum(weight * token_loss), and slices add up exactly to the mini-batch loss, however the
batch was cut. (Averaging per micro-batch instead silently changes the objective.)
"""

from __future__ import annotations

import torch

from system.algorithms.kl import kl_penalty
from system.algorithms.objectives import POLICY_OBJECTIVES
from system.registry import Registry


LOSS_AGGREGATIONS = Registry("loss aggregation")
register_loss_aggregation = LOSS_AGGREGATIONS.register


@register_loss_aggregation("token-mean")
def token_mean(mask: torch.Tensor, max_response_len: int) -> torch.Tensor:
    """Every token of the mini-batch weighs the same (DAPO)."""
    return mask / mask.sum().clamp(min=1)


@register_loss_aggregation("seq-mean-token-mean")
def seq_mean_token_mean(mask: torch.Tensor, max_response_len: int) -> torch.Tensor:
    """Mean over the tokens of a sequence, then over sequences (original GRPO)."""
    return mask / mask.sum(1, keepdim=True).clamp(min=1) / _loss_carrying(mask)


@register_loss_aggregation("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(mask: torch.Tensor, max_response_len: int) -> torch.Tensor:
    """Sum over a sequence's tokens / a constant max length, mean over sequences (Dr. GRPO)."""
    return mask / (max_response_len * _loss_carrying(mask))


def _loss_carrying(mask: torch.Tensor) -> torch.Tensor:
    """Sequences that carry loss at all."""
    return (mask.sum(1) > 0).sum().clamp(min=1)


def token_weights(mask: torch.Tensor, mode: str, max_response_len: int) -> torch.Tensor:
    """mask: [sequences, tokens], 1 on response tokens that carry loss; `mode` names a registered
    aggregation (or a user's `package.module:fn` of the same signature)."""
    return LOSS_AGGREGATIONS.get(mode)(mask.float(), max_response_len)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    eps_low: float,
    eps_high: float,
    *,
    objective: str = "ppo",
    clip_ratio_c: float = 3.0,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    is_weights: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective's token loss (system/algorithms/objectives.py) + GRPO's KL-in-loss term - the
    entropy bonus, summed with the aggregation's token weights. All inputs are [sequences, tokens]
    except `advantages`: [sequences] (one per sample, broadcast over its tokens) or [sequences, tokens]
    (one per token: on-policy distillation, on_policy_distill.py). `is_weights`: the off-policy
    correction of each token's objective term (system/algorithms/off_policy.py), or None. `entropy`: each
    token's policy entropy, differentiable, when entropy_coef > 0 (a bonus: it raises the entropy).
    Stats are sums over the loss-carrying tokens: `clip_count` counts the clipped ones."""
    loss_tokens = weights > 0
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    token_loss, clipped = POLICY_OBJECTIVES.get(objective)(
        logp, old_logp, adv, loss_tokens.to(logp.dtype), eps_low, eps_high, clip_ratio_c)
    if is_weights is not None:
        token_loss = token_loss * is_weights
    stats = {"clip_count": (clipped & loss_tokens).sum().float()}
    if ref_logp is not None and kl_coef > 0:
        kl = kl_penalty(logp, ref_logp, kl_estimator)
        token_loss = token_loss + kl_coef * kl
        stats["kl"] = (kl.detach() * weights).sum()
    if entropy is not None and entropy_coef > 0:
        token_loss = token_loss - entropy_coef * entropy
    return (token_loss * weights).sum(), stats
