"""Policy objectives: the per-token loss whose gradient moves the policy, in a registry
(`algorithm.policy_loss`; a user's `package.module:fn` of the same signature works too).

With r = pi / pi_old per token (the policy being trained over the one before this update) and A
the sample's advantage:

  ppo         -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A)           PPO-clip, as GRPO and DAPO
  gspo        the same with r replaced by the sequence ratio             GSPO (Qwen, arXiv 2507.18071)
              s = exp(mean over the sample's tokens of log(pi / pi_old)), clipped per sequence
  gspo_token  the same with r = sg(s) * pi / sg(pi): the value of s,     GSPO-token: equal to gspo in
              but each token's own gradient (sg = stop-gradient)         value and gradient when A is
                                                                         per sequence, as here
  cispo       -sg(clip(r, 1 - eps_low, 1 + eps_high)) A log pi          CISPO (MiniMax-M1, arXiv
              the weight is clipped and detached, so no token's         2506.13585); the paper sets no
              gradient is dropped, only its weight capped                lower bound (eps_low >= 1)

Dual clip (Ye et al. 2020; verl's `clip_ratio_c`, default 3): for A < 0 the ratio surrogates'
loss -r A grows without bound as r grows; with c > 0 it is capped at -c A (no gradient there):
loss = min(max(-r A, -clip(r) A), -c A). CISPO's loss is not a ratio surrogate: c does not apply.

Each objective returns (token loss, clipped): clipped marks the tokens whose gradient the clipping
removed (ppo, gspo*) or capped (cispo), for `train/clip_frac`.
"""

from __future__ import annotations

import torch

from system.registry import Registry

POLICY_OBJECTIVES = Registry("policy objective")
register_policy_objective = POLICY_OBJECTIVES.register


def sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of each row's masked values, [sequences, 1] (0 for a row without any)."""
    return (values * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)


def clipped_surrogate(ratio: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float,
                      clip_ratio_c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's pessimistic surrogate -min(r A, clip(r) A), dual-clipped at -c A for A < 0 when c > 0."""
    surrogate, clipped = ratio * adv, ratio.clamp(1 - eps_low, 1 + eps_high) * adv
    loss, was_clipped = -torch.min(surrogate, clipped), surrogate > clipped
    if clip_ratio_c > 0:
        dual = (adv < 0) & (loss > -clip_ratio_c * adv)
        loss, was_clipped = torch.where(dual, -clip_ratio_c * adv, loss), was_clipped | dual
    return loss, was_clipped


# Every objective: logp, old_logp [sequences, tokens]; adv [sequences, 1] (one per sample) or
# [sequences, tokens] (one per token); mask [sequences, tokens], 1 on the tokens that carry loss.


@register_policy_objective("ppo")
def ppo(logp, old_logp, adv, mask, eps_low: float, eps_high: float, clip_ratio_c: float):
    return clipped_surrogate(torch.exp(logp - old_logp), adv, eps_low, eps_high, clip_ratio_c)


@register_policy_objective("gspo")
def gspo(logp, old_logp, adv, mask, eps_low: float, eps_high: float, clip_ratio_c: float):
    s = torch.exp(sequence_mean(logp - old_logp, mask))  # the geometric mean of the token ratios
    return clipped_surrogate(s.expand_as(logp), adv, eps_low, eps_high, clip_ratio_c)


@register_policy_objective("gspo_token")
def gspo_token(logp, old_logp, adv, mask, eps_low: float, eps_high: float, clip_ratio_c: float):
    log_s = sequence_mean(logp - old_logp, mask).detach()
    ratio = torch.exp(log_s + logp - logp.detach())  # value s, gradient s * d log pi of its own token
    return clipped_surrogate(ratio, adv, eps_low, eps_high, clip_ratio_c)


@register_policy_objective("cispo")
def cispo(logp, old_logp, adv, mask, eps_low: float, eps_high: float, clip_ratio_c: float):
    ratio = torch.exp(logp - old_logp).detach()
    weight = ratio.clamp(1 - eps_low, 1 + eps_high)
    return -weight * adv * logp, weight != ratio
