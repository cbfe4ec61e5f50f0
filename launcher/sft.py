"""Supervised fine-tuning on chats (R1's cold start, and the student side of distillation), the
loss on the assistant's tokens only, with the DeepSpeed ranks as Ray actors.

    python launcher/sft.py --config configs/sft_arithmetic_cpu.yaml [key.sub=value ...]

One step:  a batch of rows (chats, or several packed into one row) -> dealt over the ranks
           -> forward/backward on the assistant tokens -> one optimizer step -> log.
Held-out chats give `eval/loss`. The final model is an HF folder at RUN_DIR/final/: the next
stage of a recipe (GRPO, or distillation with it as teacher) loads it as `model.path`.
"""

from __future__ import annotations

import os
import time

from tqdm import tqdm
from transformers import AutoTokenizer

from actors.cluster import cluster_platform, release, start_ray
from actors.group import ActorGroup
from actors.placement import Placement
from actors.sft import SFTTrainer
from launcher.lifecycle import check_resume, checkpoint_due, launch, make_logger, restore_checkpoint, save_checkpoint
from system.data.sampler import PromptSampler
from system.models import resolve_model
from system.config.recipe import SFTConfig, validate_sft
from system.training.sft import SFTRow, encode_conversation, load_conversations, make_rows


def sft_step(trainer: ActorGroup, batch: list[SFTRow]) -> dict:
    k = len(trainer.actors)
    tokens = sum(float(row.loss_mask.sum()) for row in batch)  # the loss is a mean over all of them
    start = time.perf_counter()
    per_rank = trainer.run_sharded("train_step", [batch[r::k] for r in range(k)], tokens, phase="train step")
    elapsed = time.perf_counter() - start
    return {
        "train/loss": sum(r["loss"] for r in per_rank),
        "train/grad_norm": per_rank[0]["grad_norm"],
        "train/lr": per_rank[0]["lr"],
        "train/loss_tokens": tokens,
        "throughput/tokens_per_s": sum(len(row.tokens) for row in batch) / elapsed,
        "timing/step_s": elapsed,
    }


def evaluate(trainer: ActorGroup, eval_rows: list[SFTRow]) -> dict:
    """Mean NLL per assistant token over the held-out chats."""
    k = len(trainer.actors)
    parts = trainer.run_sharded("eval_nll", [eval_rows[r::k] for r in range(k)], phase="eval")
    return {"eval/loss": sum(p["nll"] for p in parts) / max(sum(p["tokens"] for p in parts), 1.0)}


def train(cfg, run_dir: str) -> str:
    """The whole run; returns the final model's folder. The trainer actors are gone afterwards."""
    model_path = resolve_model(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    checkpoint = check_resume(cfg, run_dir, model_path)  # a bad checkpoint fails here, before any actor starts
    train_chats, eval_chats = load_conversations(cfg.data)
    rows = lambda chats: make_rows([encode_conversation(tokenizer, c) for c in chats], cfg.max_length,  # noqa: E731
                                   cfg.packing)
    train_rows, eval_rows = rows(train_chats), rows(eval_chats)
    loader = PromptSampler(train_rows, cfg.batch_size, cfg.seed)
    steps = cfg.steps or cfg.epochs * (len(train_rows) // cfg.batch_size)
    print(f"SFT: {len(train_chats)} chats in {len(train_rows)} rows, {steps} steps", flush=True)

    start_ray(cfg.ray_address, Placement.logical_cpus(cfg.roles(), cfg.placement))
    placement = Placement(cfg.roles(), cfg.placement, cluster_platform())
    trainer = ActorGroup(SFTTrainer, "sft", placement.options("policy"), model_path, cfg,
                         tokenizer.pad_token_id)
    trainer.init(steps)
    start = restore_checkpoint(checkpoint, trainer, loader, run_dir) if checkpoint else 0

    logger = make_logger(cfg, run_dir)
    eval_due = lambda step: cfg.eval_every > 0 and eval_rows and step % cfg.eval_every == 0  # noqa: E731
    bar = tqdm(range(start, steps), desc="SFT", initial=start, total=steps,
               disable=not cfg.logging.progress_bar, dynamic_ncols=True)
    for step in bar:
        metrics = evaluate(trainer, eval_rows) if eval_due(step) else {}
        metrics.update(sft_step(trainer, loader.next_batch()))
        metrics.update({"data/epoch": loader.epoch, "data/position": loader.position})
        logger.log(metrics, step)
        bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", step_s=f"{metrics['timing/step_s']:.1f}")
        if checkpoint_due(cfg, step + 1, steps):
            save_checkpoint(step + 1, cfg, trainer, loader.state(), run_dir)
    if cfg.eval_every > 0 and eval_rows:  # and once after the last step
        logger.log(evaluate(trainer, eval_rows), steps)
    final = os.path.join(run_dir, "final")
    trainer.run("save_model", final, phase="save")
    logger.close()
    release(trainer.actors, placement)
    print(f"final model: {final}", flush=True)
    return final


def main(argv: list[str] | None = None) -> str:
    return launch(argv, __doc__, SFTConfig, validate_sft, lambda cfg, run_dir, _: train(cfg, run_dir))


if __name__ == "__main__":
    main()
