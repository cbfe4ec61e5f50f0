"""KL(pi || pi_ref) estimators per token, from log-probs of the sampled tokens (Schulman, 2020),
in a registry: `algorithm.kl_estimator` names one, or a user's `package.module:fn`.

With log_ratio = logp - logp_ref and samples drawn from pi:
  k1 = log_ratio                           unbiased, high variance, can be negative
  k2 = log_ratio^2 / 2                     biased, low variance
  k3 = exp(-log_ratio) - 1 + log_ratio     unbiased, low variance, always >= 0 (GRPO's choice)
"""

from __future__ import annotations

import torch

from system.registry import Registry

KL_ESTIMATORS = Registry("KL estimator")
register_kl_estimator = KL_ESTIMATORS.register


@register_kl_estimator("k1")
def k1(log_ratio: torch.Tensor) -> torch.Tensor:
    return log_ratio


@register_kl_estimator("k2")
def k2(log_ratio: torch.Tensor) -> torch.Tensor:
    return 0.5 * log_ratio.square()


@register_kl_estimator("k3")
def k3(log_ratio: torch.Tensor) -> torch.Tensor:
    # clamp: exp of a large negative log-ratio overflows in low precision
    return torch.exp(-log_ratio.clamp(-20, 20)) - 1 + log_ratio


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    return KL_ESTIMATORS.get(estimator)(logp - ref_logp)
