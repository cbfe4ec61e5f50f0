"""KL(pi || pi_ref) estimators per token, from log-probs of the sampled tokens (Schulman, 2020).

With log_ratio = logp - logp_ref and samples drawn from pi:
  k1 = log_ratio                           unbiased, high variance, can be negative
  k2 = log_ratio^2 / 2                     biased, low variance
  k3 = exp(-log_ratio) - 1 + log_ratio     unbiased, low variance, always >= 0 (GRPO's choice)
"""

from __future__ import annotations

import torch


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    log_ratio = logp - ref_logp
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.square()
    if estimator == "k3":
        # clamp: exp of a large negative log-ratio overflows in low precision
        return torch.exp(-log_ratio.clamp(-20, 20)) - 1 + log_ratio
    raise ValueError(f"unknown KL estimator '{estimator}', expected k1, k2 or k3")
