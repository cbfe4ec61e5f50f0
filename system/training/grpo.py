"""The GRPO / PPO update of one data-parallel rank: the clipped surrogate (+ KL) over mini-batches."""

from __future__ import annotations

import math

import torch

from system.algorithms.losses import policy_loss
from system.algorithms.off_policy import off_policy_weights
from system.training.logprobs import compute_logprobs, first_loss_position, micro_batches, pad_sequences, token_logprobs
from system.training.samples import TrainingSample


def grpo_update(engine, minibatches: list[list[TrainingSample]], algo, *, micro_batch: int, ppo_epochs: int,
                pad_id: int, temperature: float, world_size: int) -> dict[str, float]:
    """GRPO/PPO update over this rank's share of each mini-batch; one optimizer step per mini-batch.

    Every sample has its `weights` (token weights of its mini-batch, see system/algorithms/losses.py)
    and `advantage`, and `ref_logp` when the KL term is on.
    Returns sums that the driver reduces over ranks, plus `sync/*` log-prob agreement stats
    between the engine that sampled and this trainer before its first optimizer step."""
    with_ref = minibatches[0][0].ref_logp is not None
    keys = ["tokens", "loss_mask", "weights", "rollout_logp"] + (["ref_logp"] if with_ref else [])
    reuse_old = ppo_epochs * len(minibatches) > 1  # off-policy after the first step: need frozen old log-probs
    if reuse_old:
        everything = [s for mb in minibatches for s in mb]
        for s, logp in zip(everything, compute_logprobs(engine, everything, micro_batch, pad_id, temperature)):
            s.old_logp = logp
        keys.append("old_logp")
    engine.train()
    totals: dict[str, float] = {"loss": 0.0, "clip_count": 0.0, "tokens": 0.0, "kl": 0.0, "entropy_sum": 0.0,
                                "grad_norm": 0.0, "sync/logprob_diff_sum": 0.0, "sync/logprob_diff_max": 0.0,
                                "sync/tokens": 0.0}
    if algo.off_policy != "none":
        totals.update({"off_policy/ratio_sum": 0.0, "off_policy/ratio_max": 0.0, "off_policy/masked": 0.0})
    for epoch in range(ppo_epochs):
        for mb_index, minibatch in enumerate(minibatches):
            for mb in micro_batches(minibatch, micro_batch):
                b = pad_sequences(mb, keys, pad_id, engine.device)
                mask = b["loss_mask"].bool()
                logp, entropy = token_logprobs(engine, b["tokens"], b["attention_mask"], temperature, with_entropy=True,
                                               start=first_loss_position(mb))
                old_logp = b["old_logp"] if reuse_old else logp.detach()
                advantages = torch.tensor([s.advantage for s in mb], device=logp.device, dtype=logp.dtype)
                is_weights = None
                if algo.off_policy != "none":  # pi_old / engine, on the tokens the engine sampled
                    is_weights, rho = off_policy_weights(old_logp.float(), b["rollout_logp"], b["loss_mask"],
                                                         algo.off_policy, algo.off_policy_level, algo.off_policy_cap)
                    if epoch == 0 and mask.any():
                        totals["off_policy/ratio_sum"] += float(rho[mask].sum())
                        totals["off_policy/ratio_max"] = max(totals["off_policy/ratio_max"], float(rho[mask].max()))
                        totals["off_policy/masked"] += float((is_weights[mask] == 0).sum())
                loss, stats = policy_loss(
                    logp, old_logp, advantages, b["weights"].float(), algo.eps_low, algo.eps_high,
                    b.get("ref_logp") if not algo.kl_in_reward else None, algo.kl_coef, algo.kl_estimator,
                    is_weights,
                )
                # DeepSpeed averages gradients over ranks; weights already normalise over the global mini-batch.
                engine.backward(loss * world_size, scale_wrt_gas=False)
                engine.step()
                totals["loss"] += float(loss.detach())
                totals["clip_count"] += float(stats["clip_frac"])
                totals["kl"] += float(stats.get("kl", 0.0))
                if epoch == 0:
                    totals["tokens"] += float(mask.sum())
                    totals["entropy_sum"] += float(entropy[mask].sum())
                if epoch == 0 and (reuse_old or mb_index == 0) and mask.any():  # weights still the engine's
                    reference = b["old_logp"] if reuse_old else logp.detach()
                    diff = (reference - b["rollout_logp"]).abs()[mask]
                    totals["sync/logprob_diff_sum"] += float(diff.sum())
                    totals["sync/logprob_diff_max"] = max(totals["sync/logprob_diff_max"], float(diff.max()))
                    totals["sync/tokens"] += float(mask.sum())
            norm = engine.get_global_grad_norm()
            totals["grad_norm"] = float(norm) if norm is not None and math.isfinite(float(norm)) else 0.0
    totals["optimizer_steps"] = ppo_epochs * len(minibatches)
    totals["lr"] = engine.get_lr()[0]
    return totals
