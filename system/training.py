"""DeepSpeed model engines and the GRPO update, as plain functions of one data-parallel rank.

The Ray actors in `actors/policy.py` and `actors/reference.py` only hold the engine and call
these; everything here runs (and is tested) without Ray.
"""

from __future__ import annotations

import math
import os

import deepspeed
import torch
from transformers import AutoModelForCausalLM

from system.algorithms.losses import policy_loss
from system.logprobs import first_loss_position, micro_batches, pad_sequences, token_logprobs

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


def deepspeed_config(zero_stage: int, micro_batch: int, grad_accum: int, dtype: str, world_size: int,
                     max_grad_norm: float = 1.0) -> dict:
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch * grad_accum * world_size,
        "gradient_clipping": max_grad_norm,
        "zero_optimization": {"stage": zero_stage},
        "bf16": {"enabled": dtype == "bfloat16"},
        "fp16": {"enabled": dtype == "float16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def load_model(model_path: str, dtype: str, gradient_checkpointing: bool = False):
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=DTYPES[dtype])
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.config.use_cache = False
    return model


def init_train_engine(model_path: str, cfg, dtype: str, grad_accum: int, world_size: int, device: str):
    """Policy: model + AdamW + warmup schedule under DeepSpeed ZeRO (cfg: TrainConfig)."""
    model = load_model(model_path, dtype, cfg.gradient_checkpointing)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay, fused=(device == "cuda")
    )
    warmup = max(cfg.warmup_steps, 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (warmup + 1)))
    ds_config = deepspeed_config(cfg.zero_stage, cfg.micro_batch_size, grad_accum, dtype, world_size, cfg.max_grad_norm)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    return engine


def init_eval_engine(model_path: str, zero_stage: int, micro_batch: int, dtype: str, world_size: int):
    """Reference: the frozen model, sharded by ZeRO-3 when it is large; no optimizer."""
    model = load_model(model_path, dtype)
    model.requires_grad_(False)
    ds_config = deepspeed_config(zero_stage if zero_stage == 3 else 0, micro_batch, 1, dtype, world_size)
    engine, *_ = deepspeed.initialize(model=model, config=ds_config)
    engine.eval()
    return engine


def save_model(engine, path: str, tokenizer_path: str, zero_stage: int, rank: int) -> None:
    """The model as an HF folder (transformers and vLLM load it as any model), written by rank 0.
    Every rank calls it: under ZeRO-3 the shards are gathered collectively first."""
    from transformers import AutoTokenizer

    state_dict = engine._zero3_consolidated_16bit_state_dict() if zero_stage == 3 else engine.module.state_dict()
    if rank == 0:
        engine.module.save_pretrained(path, state_dict=state_dict, safe_serialization=True)
        AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(path)


def save_checkpoint(engine, path: str, tokenizer_path: str, zero_stage: int, rank: int) -> None:
    """All ranks: DeepSpeed's optimizer/scheduler state in `path/deepspeed`, the model in `path/policy`."""
    engine.save_checkpoint(os.path.join(path, "deepspeed"), tag="state")
    save_model(engine, os.path.join(path, "policy"), tokenizer_path, zero_stage, rank)


def load_checkpoint(engine, path: str) -> None:
    """Weights, optimizer, LR schedule and step counters, exactly as saved."""
    load_dir, _ = engine.load_checkpoint(os.path.join(path, "deepspeed"), tag="state")
    if load_dir is None:
        raise RuntimeError(f"no DeepSpeed state in checkpoint {path}")


@torch.no_grad()
def compute_logprobs(engine, seqs: list[dict], micro_batch: int, pad_id: int, temperature: float) -> list[torch.Tensor]:
    """Per-sequence log-prob tensors (length of each sequence), in the order given."""
    out: list[torch.Tensor] = [None] * len(seqs)
    for mb in micro_batches(list(enumerate(seqs)), micro_batch, length=lambda item: len(item[1]["tokens"])):
        index, mb = zip(*mb)
        batch = pad_sequences(mb, ["tokens"], pad_id, engine.device)
        logp, _ = token_logprobs(engine, batch["tokens"], batch["attention_mask"], temperature,
                                 start=first_loss_position(mb))
        for row, (i, s) in enumerate(zip(index, mb)):
            out[i] = logp[row, : len(s["tokens"])].float().cpu()
    return out


def grpo_update(engine, minibatches: list[list[dict]], algo, *, micro_batch: int, ppo_epochs: int, pad_id: int,
                temperature: float, world_size: int) -> dict[str, float]:
    """GRPO/PPO update over this rank's share of each mini-batch; one optimizer step per mini-batch.

    Each sequence carries `tokens`, `loss_mask`, `weights` (token weights of its mini-batch, see
    system/algorithms/losses.py), `advantage`, `rollout_logp` and optionally `ref_logp`.
    Returns sums that the driver reduces over ranks, plus `sync/*` log-prob agreement stats
    between the engine that sampled and this trainer before its first optimizer step."""
    keys = ["tokens", "loss_mask", "weights", "rollout_logp"] + (["ref_logp"] if "ref_logp" in minibatches[0][0] else [])
    reuse_old = ppo_epochs * len(minibatches) > 1  # off-policy after the first step: need frozen old log-probs
    if reuse_old:
        everything = [s for mb in minibatches for s in mb]
        for s, logp in zip(everything, compute_logprobs(engine, everything, micro_batch, pad_id, temperature)):
            s["old_logp"] = logp
        keys.append("old_logp")
    engine.train()
    totals: dict[str, float] = {"loss": 0.0, "clip_count": 0.0, "tokens": 0.0, "kl": 0.0, "entropy_sum": 0.0,
                                "grad_norm": 0.0, "sync/logprob_diff_sum": 0.0, "sync/logprob_diff_max": 0.0,
                                "sync/tokens": 0.0}
    for epoch in range(ppo_epochs):
        for mb_index, minibatch in enumerate(minibatches):
            for mb in micro_batches(minibatch, micro_batch):
                b = pad_sequences(mb, keys, pad_id, engine.device)
                mask = b["loss_mask"].bool()
                logp, entropy = token_logprobs(engine, b["tokens"], b["attention_mask"], temperature, with_entropy=True,
                                               start=first_loss_position(mb))
                old_logp = b["old_logp"] if reuse_old else logp.detach()
                advantages = torch.tensor([s["advantage"] for s in mb], device=logp.device, dtype=logp.dtype)
                loss, stats = policy_loss(
                    logp, old_logp, advantages, b["weights"].float(), algo.eps_low, algo.eps_high,
                    b.get("ref_logp") if not algo.kl_in_reward else None, algo.kl_coef, algo.kl_estimator,
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
                if epoch == 0 and (reuse_old or mb_index == 0):  # weights still those the engine sampled with
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
