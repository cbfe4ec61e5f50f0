"""The GRPO / PPO update of one data-parallel rank: the policy objective (+ KL) over mini-batches, skipping
an update whose loss or gradient is NaN/inf."""

from __future__ import annotations

import math

import torch

from system.algorithms.losses import policy_loss
from system.algorithms.off_policy import off_policy_weights
from system.algorithms.on_policy_distill import distill_advantages
from system.training.logprobs import compute_logprobs, pad_sequences, token_logprobs
from system.training.packing import micro_batch_groups, pack
from system.training.samples import TrainingSample


def grpo_update(engine, minibatches: list[list[TrainingSample]], algo, *, max_tokens: int, micro_batch: int,
                ppo_epochs: int, temperature: float, world_size: int, distill=None) -> dict[str, float]:
    """GRPO/PPO update over this rank's share of each mini-batch; one optimizer step per mini-batch,
    over packed micro-batches of at most `max_tokens` tokens (or `micro_batch` sequences when 0).

    Every sample has its `weights` (token weights of its mini-batch, see system/algorithms/losses.py)
    and `advantage`, and `ref_logp` when the KL term is on; `teacher_logp` in on-policy distillation,
    whose per-token advantages are made here from the trainer's log-probs before the update (`distill`:
    its OnPolicyDistillConfig; system/algorithms/on_policy_distill.py says why these log-probs).
    Returns sums that the driver reduces over ranks, plus `sync/*` log-prob agreement stats
    between the engine that sampled and this trainer before its first optimizer step."""
    with_ref, with_teacher = minibatches[0][0].ref_logp is not None, minibatches[0][0].teacher_logp is not None
    keys = ["loss_mask", "weights", "rollout_logp"] + (["ref_logp"] if with_ref else [])
    keys += ["teacher_logp"] if with_teacher else []
    reuse_old = ppo_epochs * len(minibatches) > 1  # off-policy after the first step: need frozen old log-probs
    if reuse_old:
        everything = [s for mb in minibatches for s in mb]
        for s, logp in zip(everything, compute_logprobs(engine, everything, temperature, max_tokens=max_tokens,
                                                        micro_batch=micro_batch)):
            s.old_logp = logp
        keys.append("old_logp")
    engine.train()
    totals: dict[str, float] = {"loss": 0.0, "clip_count": 0.0, "tokens": 0.0, "kl": 0.0, "entropy_sum": 0.0,
                                "grad_norm": 0.0, "sync/logprob_diff_sum": 0.0, "sync/logprob_diff_max": 0.0,
                                "sync/tokens": 0.0, "skipped_updates": 0.0}
    skipped = 0  # updates skipped since the last applied one
    if algo.off_policy != "none":
        totals.update({"off_policy/ratio_sum": 0.0, "off_policy/ratio_max": 0.0, "off_policy/masked": 0.0})
    if with_teacher:
        totals["distill/reverse_kl_sum"] = 0.0
    for epoch in range(ppo_epochs):
        for mb_index, minibatch in enumerate(minibatches):
            groups = micro_batch_groups(minibatch, max_tokens, micro_batch, engine.device)
            for g, group in enumerate(groups):
                mb = [minibatch[i] for i in group]
                last = g == len(groups) - 1  # its step applies the mini-batch's update
                engine.set_gradient_accumulation_boundary(last)
                b = pad_sequences(mb, keys, 0, engine.device)
                mask = b["loss_mask"].bool()
                logp, entropy = token_logprobs(engine, pack(mb, engine.device), temperature, with_entropy=True)
                old_logp = b["old_logp"] if reuse_old else logp.detach()
                advantages = torch.tensor([s.advantage for s in mb], device=logp.device, dtype=logp.dtype)
                if with_teacher:  # one advantage per token: the task's (weighted) minus the reverse KL
                    advantages, k = distill_advantages(old_logp.float(), b["teacher_logp"], advantages.float(),
                                                       b["loss_mask"], distill.coef, distill.task_coef)
                    if epoch == 0:
                        totals["distill/reverse_kl_sum"] += float(k[mask].sum())
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
                    objective=algo.policy_loss, clip_ratio_c=algo.clip_ratio_c,
                    ref_logp=b.get("ref_logp") if not algo.kl_in_reward else None, kl_coef=algo.kl_coef,
                    kl_estimator=algo.kl_estimator, is_weights=is_weights, entropy=entropy,
                    entropy_coef=algo.entropy_coef,
                )
                if not torch.isfinite(loss):  # its gradient may still be finite (a NaN on a masked token):
                    loss = logp.sum() * math.nan  # make it NaN, so the one rule below skips the update
                # DeepSpeed averages gradients over ranks; weights already normalise over the global mini-batch.
                engine.backward(loss * world_size, scale_wrt_gas=False)
                applied = step_unless_nonfinite(engine, last)
                if applied is not None:  # the mini-batch's last micro-batch: its update was applied or skipped
                    skipped = 0 if applied else skipped + 1
                    totals["skipped_updates"] += float(not applied)
                totals["loss"] += float(loss.detach())
                totals["clip_count"] += float(stats["clip_count"])
                totals["kl"] += float(stats.get("kl", 0.0))
                if epoch == 0:
                    totals["tokens"] += float(mask.sum())
                    totals["entropy_sum"] += float(entropy.detach()[mask].sum())
                if epoch == 0 and (reuse_old or mb_index == 0) and mask.any():  # weights still the engine's
                    reference = b["old_logp"] if reuse_old else logp.detach()
                    diff = (reference - b["rollout_logp"]).abs()[mask]
                    totals["sync/logprob_diff_sum"] += float(diff.sum())
                    totals["sync/logprob_diff_max"] = max(totals["sync/logprob_diff_max"], float(diff.max()))
                    totals["sync/tokens"] += float(mask.sum())
            norm = engine.get_global_grad_norm()
            totals["grad_norm"] = float(norm) if norm is not None and math.isfinite(float(norm)) else 0.0
    totals["optimizer_steps"] = ppo_epochs * len(minibatches)
    totals["skipped_at_end"] = skipped
    totals["lr"] = engine.get_lr()[0]
    return totals


def step_unless_nonfinite(engine, boundary: bool) -> bool | None:
    """engine.step(). At a mini-batch's end (`boundary`, as the engine was told before the micro-batch:
    packed micro-batches vary in number): whether its update was applied (False: skipped for a NaN/inf
    gradient); None between micro-batches. DeepSpeed's own optimizers (ZeRO >= 1, bf16, fp16) skip such a
    step themselves and say so. The plain torch optimizer it keeps for ZeRO-0 in fp32 would apply it:
    there the gradients are dropped and the step is told it is not a boundary, so it only counts the
    micro-batch (as DeepSpeed's own skip, the learning-rate schedule does not advance)."""
    if not boundary:
        engine.step()
        return None
    plain = not hasattr(engine.optimizer, "overflow")  # its gradients are whole and reduced over ranks here
    if plain and not all(torch.isfinite(p.grad).all() for p in engine.module.parameters() if p.grad is not None):
        engine.zero_grad()
        engine.set_gradient_accumulation_boundary(False)
        engine.step()
        return False
    engine.step()
    return engine.was_step_applied()


def skipped_in_a_row(before: int, update: dict) -> int:
    """Policy updates skipped in a row, counted over steps, after one grpo_update's totals (any rank's:
    they agree)."""
    if update["skipped_updates"] < update["optimizer_steps"]:  # one was applied: count from there
        before = 0
    return before + int(update["skipped_at_end"])


def stop_if_skipping(in_a_row: int, limit: int) -> None:
    """A NaN/inf that keeps coming back is a broken run, not bad luck: stop it with what to look at."""
    if in_a_row >= limit:
        raise RuntimeError(f"{in_a_row} policy updates in a row were skipped for a NaN/inf loss or gradient "
                           f"(train.max_skipped_updates_in_a_row={limit}): see train/loss and train/grad_norm in "
                           f"metrics.jsonl; lower train.lr, or look for NaN in the rewards and advantages")
