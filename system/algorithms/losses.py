"""The clipped policy-gradient loss and how it is averaged over tokens.

Every aggregation mode is written as one weight per token, computed over the whole mini-batch
*before* it is split across data-parallel ranks and micro-batches. The loss of any slice is then
just sum(weight * token_loss), and slices add up exactly to the mini-batch loss, however the
batch was cut. (Averaging per micro-batch instead silently changes the objective.)
"""

from __future__ import annotations

import torch

from system.algorithms.kl import kl_penalty


def token_weights(mask: torch.Tensor, mode: str, max_response_len: int) -> torch.Tensor:
    """mask: [sequences, tokens], 1 on response tokens that carry loss.

    token-mean               every token of the mini-batch weighs the same (DAPO)
    seq-mean-token-mean      mean over tokens of a sequence, then over sequences (original GRPO)
    seq-mean-token-sum-norm  sum over tokens / a constant max length, mean over sequences (Dr. GRPO)
    """
    mask = mask.float()
    if mode == "token-mean":
        return mask / mask.sum().clamp(min=1)
    num_seqs = (mask.sum(1) > 0).sum().clamp(min=1)  # sequences that carry loss at all
    if mode == "seq-mean-token-mean":
        return mask / mask.sum(1, keepdim=True).clamp(min=1) / num_seqs
    if mode == "seq-mean-token-sum-norm":
        return mask / (max_response_len * num_seqs)
    raise ValueError(f"unknown loss aggregation '{mode}'")


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    eps_low: float,
    eps_high: float,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip surrogate with GRPO's KL-in-loss term; all inputs are [sequences, tokens]
    except `advantages` ([sequences], broadcast over tokens)."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    surrogate = ratio * adv
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high) * adv
    token_loss = -torch.min(surrogate, clipped)
    stats = {"clip_frac": ((surrogate > clipped).float() * (weights > 0)).sum()}
    if ref_logp is not None and kl_coef > 0:
        kl = kl_penalty(logp, ref_logp, kl_estimator)
        token_loss = token_loss + kl_coef * kl
        stats["kl"] = (kl.detach() * weights).sum()
    return (token_loss * weights).sum(), stats
