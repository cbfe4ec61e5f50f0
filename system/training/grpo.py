"""The GRPO / PPO update of one data-parallel rank: the policy objective (+ KL) over mini-batches, skipping
an update whose loss or gradient is NaN/inf."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from system.algorithms.losses import policy_loss
from system.algorithms.off_policy import off_policy_weights
from system.algorithms.on_policy_distill import distill_advantages
from system.training.logprobs import compute_logprobs, pad_sequences, token_logprobs
from system.training.packing import micro_batch_groups, pack
from system.training.samples import TrainingSample


def grpo_update(engine, minibatches: list[list[TrainingSample]], algo, *, max_tokens: int, micro_batch: int,
                ppo_epochs: int, temperature: float, world_size: int, distill=None,
                share_prefixes: bool = False) -> dict[str, float]:
    """GRPO/PPO update over this rank's share of each mini-batch; one optimizer step per mini-batch,
    over packed micro-batches of at most `max_tokens` tokens (or `micro_batch` sequences when 0), each
    shared prefix computed once with `share_prefixes`.

    Every sample has its `weights` (token weights of its mini-batch, see system/algorithms/losses.py)
    and `advantage`, and `ref_logp` when the KL term is on; `teacher_logp` in on-policy distillation,
    whose per-token advantages are made here from the trainer's log-probs before the update (`distill`:
    its OnPolicyDistillConfig; system/algorithms/on_policy_distill.py says why these log-probs).
    Returns sums that the driver reduces over ranks, plus `sync/*` log-prob agreement stats
    between the engine that sampled and this trainer before its first optimizer step."""
    first = minibatches[0][0]
    with_ref, with_teacher = first.ref_logp is not None, first.teacher_logp is not None
    keys = ["loss_mask", "weights", "rollout_logp"] + (["ref_logp"] if with_ref else [])
    keys += ["teacher_logp"] if with_teacher else []
    reuse_old = ppo_epochs * len(minibatches) > 1  # off-policy after the first step: frozen old log-probs
    if reuse_old:
        everything = [s for mb in minibatches for s in mb]
        old = compute_logprobs(engine, everything, temperature, max_tokens=max_tokens,
                               micro_batch=micro_batch, share_prefixes=share_prefixes)
        for s, logp in zip(everything, old):
            s.old_logp = logp
        keys.append("old_logp")
    engine.train()
    totals = UpdateTotals(off_policy=algo.off_policy != "none", distill=with_teacher)
    steps = micro_batches(minibatches, ppo_epochs, max_tokens, micro_batch, engine.device, share_prefixes)
    for epoch, mb_index, last, mb in steps:
        engine.set_gradient_accumulation_boundary(last)
        b = pad_sequences(mb, keys, 0, engine.device)
        mask = b["loss_mask"]
        packed = pack(mb, engine.device, share_prefixes)
        logp, entropy = token_logprobs(engine, packed, temperature, with_entropy=True)
        old_logp = b["old_logp"] if reuse_old else logp.detach()
        advantages = torch.tensor([s.advantage for s in mb], device=logp.device, dtype=logp.dtype)
        reverse_kl = is_weights = rho = None
        if with_teacher:  # one advantage per token: the task's (weighted) minus the reverse KL
            advantages, reverse_kl = distill_advantages(old_logp.float(), b["teacher_logp"],
                                                        advantages.float(), mask, distill.coef,
                                                        distill.task_coef)
        if algo.off_policy != "none":  # pi_old / engine, on the tokens the engine sampled
            is_weights, rho = off_policy_weights(old_logp.float(), b["rollout_logp"], mask, algo.off_policy,
                                                 algo.off_policy_level, algo.off_policy_cap)
        # objective(pi / pi_old, A) [* is_weights] + kl_coef * KL(pi, ref) - entropy_coef * H(pi),
        # summed with the token weights (system/algorithms/losses.py)
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
        totals.add_step(loss, stats, step_unless_nonfinite(engine, last))
        if epoch == 0:  # each token once, and the sync check while the weights are still the engine's
            totals.add_tokens(mask, entropy, reverse_kl, rho, is_weights)
            totals.add_computed(packed)
            if reuse_old or mb_index == 0:
                totals.add_sync_check(old_logp, b["rollout_logp"], mask)
        if last:
            totals.set_grad_norm(engine.get_global_grad_norm())
    return totals.result(optimizer_steps=ppo_epochs * len(minibatches), lr=engine.get_lr()[0])


def micro_batches(minibatches: list[list[TrainingSample]], ppo_epochs: int, max_tokens: int, micro_batch: int,
                  device, share_prefixes: bool) -> Iterator[tuple[int, int, bool, list[TrainingSample]]]:
    """(epoch, mini-batch index, whether it is the mini-batch's last, its samples) of every micro-batch, in
    training order: the last one's step applies the mini-batch's update."""
    for epoch in range(ppo_epochs):
        for mb_index, minibatch in enumerate(minibatches):
            groups = micro_batch_groups(minibatch, max_tokens, micro_batch, device, share_prefixes)
            for g, group in enumerate(groups):
                yield epoch, mb_index, g == len(groups) - 1, [minibatch[i] for i in group]


class UpdateTotals:
    """One update's sums over micro-batches, which the driver reduces over ranks into train/*, sync/*,
    off_policy/* and distill/* metrics (launcher/grpo.py step_metrics)."""

    def __init__(self, off_policy: bool, distill: bool):
        names = ["loss", "clip_count", "tokens", "kl", "entropy_sum", "grad_norm", "sync/logprob_diff_sum",
                 "sync/logprob_diff_max", "sync/tokens", "skipped_updates", "tokens_computed", "tokens_total"]
        names += ["off_policy/ratio_sum", "off_policy/ratio_max", "off_policy/masked"] if off_policy else []
        names += ["distill/reverse_kl_sum"] if distill else []
        self.sums = dict.fromkeys(names, 0.0)
        self.skipped = 0  # updates skipped since the last applied one

    def add_step(self, loss: torch.Tensor, stats: dict, applied: bool | None) -> None:
        """A micro-batch's loss and its step (`applied`: step_unless_nonfinite's answer), in every epoch."""
        if applied is not None:  # the mini-batch's last micro-batch: its update was applied or skipped
            self.skipped = 0 if applied else self.skipped + 1
            self.sums["skipped_updates"] += float(not applied)
        self.sums["loss"] += float(loss.detach())
        self.sums["clip_count"] += float(stats["clip_count"])
        self.sums["kl"] += float(stats.get("kl", 0.0))

    def add_tokens(self, loss_mask: torch.Tensor, entropy: torch.Tensor, reverse_kl: torch.Tensor | None,
                   rho: torch.Tensor | None, is_weights: torch.Tensor | None) -> None:
        """Per-token stats of a micro-batch, in the first epoch only (each token counts once)."""
        mask = loss_mask.bool()
        self.sums["tokens"] += float(mask.sum())
        self.sums["entropy_sum"] += float(entropy.detach()[mask].sum())
        if reverse_kl is not None:
            self.sums["distill/reverse_kl_sum"] += float(reverse_kl[mask].sum())
        if rho is not None and mask.any():
            self.sums["off_policy/ratio_sum"] += float(rho[mask].sum())
            self.sums["off_policy/ratio_max"] = max(self.sums["off_policy/ratio_max"], float(rho[mask].max()))
            self.sums["off_policy/masked"] += float((is_weights[mask] == 0).sum())

    def add_computed(self, packed) -> None:
        """Tokens the forward computed (shared prefixes once) and those it stands for, in the first epoch."""
        self.sums["tokens_computed"] += packed.computed
        self.sums["tokens_total"] += packed.represented

    def add_sync_check(self, trainer_logp: torch.Tensor, rollout_logp: torch.Tensor,
                       loss_mask: torch.Tensor) -> None:
        """How far the trainer's log-probs are from the engine's that sampled, on the same weights."""
        mask = loss_mask.bool()
        if mask.any():
            diff = (trainer_logp - rollout_logp).abs()[mask]
            self.sums["sync/logprob_diff_sum"] += float(diff.sum())
            self.sums["sync/logprob_diff_max"] = max(self.sums["sync/logprob_diff_max"], float(diff.max()))
            self.sums["sync/tokens"] += float(mask.sum())

    def set_grad_norm(self, norm) -> None:
        """The last mini-batch's gradient norm (0 where the engine has none, or it is not finite)."""
        self.sums["grad_norm"] = float(norm) if norm is not None and math.isfinite(float(norm)) else 0.0

    def result(self, optimizer_steps: int, lr: float) -> dict[str, float]:
        return {**self.sums, "optimizer_steps": optimizer_steps, "skipped_at_end": self.skipped, "lr": lr}


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
    if plain and not all(torch.isfinite(p.grad).all()
                         for p in engine.module.parameters() if p.grad is not None):
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
                           f"(train.max_skipped_updates_in_a_row={limit}): see train/loss and "
                           "train/grad_norm in metrics.jsonl; lower train.lr, or look for NaN in the rewards "
                           "and advantages")
