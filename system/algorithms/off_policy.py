"""Off-policy corrections: weights that make tokens sampled by an older (or numerically different)
policy count as the trainer's own, in a registry (`algorithm.off_policy`).

The behaviour policy mu is the engine that sampled the token (its log-probs come back with every
sample); pi_old is the trainer's policy before this update, around which PPO clips. With
rho = pi_old / mu per token (or, `level: sequence`, the geometric mean of rho over a sample's
tokens: exp(mean log rho)), each function returns a detached weight per token that multiplies the
clipped surrogate; 0 removes a token from the loss. `cap` is C:

  none       1                                     trust the samples as on-policy
  tis        min(rho, C)                           truncated importance sampling
  mis        1 if 1/C <= rho <= C else 0           masked importance sampling
  decoupled  rho, 0 where rho > C                  AReaL's decoupled PPO: clip around the proximal
                                                   policy pi_old, weight by proximal / behaviour

They apply in the synchronous loop too, where vLLM's and the trainer's kernels already disagree.
"""

from __future__ import annotations

import torch

from system.algorithms.objectives import sequence_mean
from system.registry import Registry

OFF_POLICY = Registry("off-policy correction")
register_off_policy = OFF_POLICY.register
LEVELS = ("token", "sequence")


@register_off_policy("none")
def no_correction(rho: torch.Tensor, cap: float) -> torch.Tensor:
    return torch.ones_like(rho)


@register_off_policy("tis")
def truncated(rho: torch.Tensor, cap: float) -> torch.Tensor:
    return rho.clamp(max=cap)


@register_off_policy("mis")
def masked(rho: torch.Tensor, cap: float) -> torch.Tensor:
    return ((rho >= 1 / cap) & (rho <= cap)).to(rho.dtype)


@register_off_policy("decoupled")
def decoupled(rho: torch.Tensor, cap: float) -> torch.Tensor:
    return torch.where(rho <= cap, rho, torch.zeros_like(rho))


def importance_ratio(old_logp: torch.Tensor, behaviour_logp: torch.Tensor, mask: torch.Tensor,
                     level: str) -> torch.Tensor:
    """rho per token, [sequences, tokens] (1 where mask is 0); `sequence`: every token of a sample
    gets the geometric mean over its masked tokens."""
    log_rho = (old_logp - behaviour_logp) * mask
    if level == "sequence":
        log_rho = sequence_mean(log_rho, mask).expand_as(mask) * mask
    elif level != "token":
        raise ValueError(f"off-policy level must be one of {LEVELS}, got {level!r}")
    return torch.exp(log_rho.clamp(-20, 20))


def off_policy_weights(old_logp: torch.Tensor, behaviour_logp: torch.Tensor, mask: torch.Tensor, method: str,
                       level: str, cap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, rho) per token, both detached; weights are 0 where mask is 0."""
    with torch.no_grad():
        rho = importance_ratio(old_logp, behaviour_logp, mask, level)
        return OFF_POLICY.get(method)(rho, cap) * mask, rho
