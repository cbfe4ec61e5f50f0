"""GRPO with rule-based rewards (the R1-Zero recipe), every role in its own Ray actor.

    python launcher/grpo.py --config configs/grpo_countdown_cpu.yaml [key.sub=value ...]
    ray job submit --working-dir . -- python launcher/grpo.py --config configs/grpo_countdown_cpu.yaml

One step:  rollout: generate (vLLM engines) + reward (reward workers), or episodes (env workers)
           -> reference (and teacher) log-probs -> group-normalised advantages (per token with a
           teacher: minus the reverse KL to it, on-policy distillation) -> clipped policy update
           (DeepSpeed ranks) -> weight sync to the engines (NCCL / gloo) -> log.
The rollouts of a step are collected by a producer thread (system/rollout/producer.py): in step
with the updates (schedule.max_staleness=0), or up to k steps ahead of them, on the engines'
older weights, while the trainer updates (k >= 1).
"""

from __future__ import annotations

import hashlib
import time

import torch
from tqdm import tqdm
from transformers import AutoTokenizer

from actors.cluster import Actors, build_actors, start_ray
from actors.memory import memory_metrics
from actors.placement import Placement
from actors.recovery import Recovery, StepAttempt
from actors.reference import logprobs_under
from launcher.evaluate import evaluate
from launcher.lifecycle import (check_resume, checkpoint_due, last_checkpoint, launch, make_logger,
                                restore_checkpoint, save_checkpoint)
from system.algorithms.advantages import get_advantage, zero_variance_groups
from system.algorithms.kl import kl_penalty
from system.config.checks import validate
from system.config.grpo import Config
from system.reporting.evaluation import solved, task_reward_metrics
from system.faults import StopRequest
from system.reporting.metrics import drop_metrics_from, timed
from system.models import resolve_model
from system.reporting.run_report import write_report
from system.rollout.producer import Batch, RolloutProducer
from system.seeds import derive_seed
from system.training.grpo import skipped_in_a_row, stop_if_skipping
from system.training.samples import TrainingSample, split_for_training


def grpo_step(step: int, cfg: Config, actors: Actors, batch: Batch, skipped_before: int = 0) -> dict:
    n = cfg.rollout.group_size

    # 1-2. Rollout (collected by the producer): n samples per task (a GRPO group, contiguous), each rewarded.
    rollout, rollouts = actors.rollout, batch.rollouts
    timings = dict(rollouts.timings)
    valid = torch.tensor([r is not None for r in rollouts.rewards])
    rewards = torch.tensor([r if r is not None else 0.0 for r in rollouts.rewards], dtype=torch.float32)
    samples = [TrainingSample.from_rollout(*s)
               for s in zip(rollouts.tokens, rollouts.loss_mask, rollouts.logprobs)]

    # 3. Reference log-probs, for the KL penalty (in the loss, or subtracted from the reward).
    # With LoRA the policy ranks score them, on their base model with the adapters off.
    kl_seq = None
    lora_reference = cfg.train.lora.enabled and cfg.algorithm.kl_coef > 0
    if actors.reference is not None or lora_reference:
        scorer, method = ((actors.policy, "reference_logprobs") if lora_reference
                          else (actors.reference, "logprobs"))
        with timed(timings, "reference"):
            ref_logps = logprobs_under(scorer, samples, "reference", method)
        for s, ref in zip(samples, ref_logps):
            s.ref_logp = ref
        estimator = cfg.algorithm.kl_estimator
        kl_seq = torch.stack([(kl_penalty(s.rollout_logp, s.ref_logp, estimator) * s.loss_mask).sum()
                              for s in samples])
        if cfg.algorithm.kl_in_reward:
            rewards = rewards - cfg.algorithm.kl_coef * kl_seq
    if actors.teacher is not None:  # on-policy distillation: the trainer makes per-token advantages of these
        with timed(timings, "teacher"):
            for s, teacher in zip(samples, logprobs_under(actors.teacher, samples, "teacher")):
                s.teacher_logp = teacher

    # 4. Advantages: normalise each reward within its group; unscorable samples carry no loss (but the
    # teacher's, if any).
    advantages = get_advantage(cfg.algorithm.advantage)(rewards, valid, n)
    flat_groups = zero_variance_groups(rewards, valid, n)
    for s, adv, ok, flat in zip(samples, advantages.tolist(), valid.tolist(), flat_groups.tolist()):
        s.advantage = adv
        if (not ok and actors.teacher is None) or (flat and cfg.algorithm.filter_zero_variance_groups):
            s.loss_mask = torch.zeros_like(s.loss_mask)

    # 5. Update the policy: clipped surrogate (+ KL) over mini-batches, sharded over DP ranks.
    with timed(timings, "train"):
        shards = split_for_training(samples, cfg.train.num_minibatches, cfg.train.num_ranks,
                                    cfg.algorithm.loss_agg, rollout.max_response_tokens,
                                    seed=derive_seed(cfg.seed, "minibatches", step),
                                    share_prefixes=cfg.train.share_prefixes)
        per_rank = actors.policy.run_sharded("update", shards, phase="update")

    lengths = torch.tensor(rollouts.response_lengths, dtype=torch.float32)
    return {
        **step_metrics(cfg, rollouts.scores, rewards, valid, flat_groups, kl_seq, per_rank,
                       rollout.correctness),
        **task_reward_metrics(rollouts, rollout.correctness),  # per task of a mixture (rows with a `task`)
        "data/tasks_digest": tasks_digest(rollouts),
        "response/length_mean": lengths.mean().item(),
        "response/length_max": lengths.max().item(),
        "response/clipped_frac": sum(r != "stop" for r in rollouts.finish_reasons) / len(samples),
        # NaN/inf updates, over steps
        "train/skipped_in_a_row": skipped_in_a_row(skipped_before, per_rank[0]),
        **(staleness_metrics(step, rollouts, batch.ready, cfg.schedule.max_staleness)
           if cfg.schedule.max_staleness > 0 else {}),
        "throughput/generated_tokens_per_s": lengths.sum().item() / timings["timing/generate_s"],
        **timings,
        "timing/step_s": sum(timings.values()),
    }


def tasks_digest(rollouts) -> int:
    """Which tasks a step trained on, as one number (48 bits of a hash of its samples' distinct
    prompts: the tokens before each sample's first generated one). Runs of one seed train the same
    tasks at every step, actor failures or not: bench/chaos.py compares it step by step."""
    prompts = {tuple(t[:m.index(1)]) for t, m in zip(rollouts.tokens, rollouts.loss_mask) if 1 in m}
    return int(hashlib.sha256(repr(sorted(prompts)).encode()).hexdigest()[:12], 16)


def sync_weights(step: int, cfg: Config, actors: Actors, metrics: dict) -> None:
    """6. Sync the new weights (of update step + 1) into every engine; skipped only to show what a
    stale engine looks like. Raises on a checksum mismatch."""
    if not cfg.sync.enabled:
        return
    verify = cfg.sync.verify_every > 0 and step % cfg.sync.verify_every == 0
    began = time.perf_counter()
    actors.weights.send(step + 1, verify)
    metrics["timing/sync_s"] = time.perf_counter() - began
    metrics["timing/step_s"] += metrics["timing/sync_s"]
    if verify:
        metrics["sync/checksum_ok"] = 1.0


def step_metrics(cfg, scores, rewards, valid, flat_groups, kl_seq, per_rank: list[dict], correctness) -> dict:
    total = {key: sum(r[key] for r in per_rank) for key in per_rank[0] if not key.endswith("_max")}
    tokens = max(total["tokens"], 1.0)
    metrics = {
        "reward/mean": rewards[valid].mean().item() if valid.any() else 0.0,
        "reward/std": rewards[valid].std().item() if valid.sum() > 1 else 0.0,
        "reward/unscorable_frac": 1 - valid.float().mean().item(),
        "groups/zero_variance_frac": flat_groups.float().mean().item(),
        "kl/mean": kl_seq.mean().item() if kl_seq is not None else 0.0,
        # every rank counts every step
        "train/loss": total["loss"] / total["optimizer_steps"] * len(per_rank),
        "train/clip_frac": total["clip_count"] / (tokens * cfg.train.ppo_epochs),
        "train/entropy": total["entropy_sum"] / tokens,
        "train/grad_norm": per_rank[0]["grad_norm"],
        "train/skipped_updates": per_rank[0]["skipped_updates"],  # for a NaN/inf loss or gradient
        "train/lr": per_rank[0]["lr"],
        # tokens the update's forward computed (each shared prefix once) and those it stands for
        "train/tokens_computed": total["tokens_computed"],
        "train/tokens_total": total["tokens_total"],
        "sync/logprob_abs_diff_mean": total["sync/logprob_diff_sum"] / max(total["sync/tokens"], 1.0),
        "sync/logprob_abs_diff_max": max(r["sync/logprob_diff_max"] for r in per_rank),
    }
    if "distill/reverse_kl_sum" in total:  # log pi_old - log pi_teacher, per trained token
        metrics["distill/reverse_kl"] = total["distill/reverse_kl_sum"] / tokens
    if "off_policy/ratio_sum" in total:  # rho = trainer's pi_old / engine, over the trained tokens
        metrics["off_policy/ratio_mean"] = total["off_policy/ratio_sum"] / tokens
        metrics["off_policy/ratio_max"] = max(r["off_policy/ratio_max"] for r in per_rank)
        metrics["off_policy/masked_frac"] = total["off_policy/masked"] / tokens
    # the KL term of the loss, as it weighs there
    if cfg.algorithm.kl_coef > 0 and not cfg.algorithm.kl_in_reward:
        metrics["train/kl"] = total["kl"] / total["optimizer_steps"] * len(per_rank)
    for name, values in scores.items():
        scored = [v for v in values if v is not None]
        key = name if name.startswith(("env/", "agent/")) else f"reward/{name}/mean"  # keep their names
        metrics[key] = sum(scored) / len(scored) if scored else 0.0
    if correctness:
        metrics["reward/accuracy"] = sum(solved(scores, correctness, [])) / len(scores[correctness])
    return metrics


def staleness_metrics(step: int, rollouts, ready: int, k: int) -> dict:
    """How many updates behind the trained policy (version `step`) each trained token's sampler was:
    mean, max and the histogram (the fraction of tokens d versions behind, d = 0..k)."""
    stale = [step - v for versions, mask in zip(rollouts.versions, rollouts.loss_mask)
             for v, m in zip(versions, mask) if m]
    count = max(len(stale), 1)
    return {"async/staleness_mean": sum(stale) / count, "async/staleness_max": max(stale, default=0),
            **{f"async/staleness_{d}_frac": stale.count(d) / count for d in range(k + 1)},
            "async/buffer_fill": ready}


def wall_timings(producer: RolloutProducer, batch: Batch, began: float, train_start: float, t0: float,
                 metrics: dict) -> dict:
    """Where the step's wall time went (it began at `began`, its update at `train_start`): the trainer
    waiting for rollouts, the engines idle, and the step's timeline since the run's start `t0`."""
    eval_s = metrics.get("timing/eval_s", 0.0)
    wall = time.monotonic() - began
    engine_busy = producer.engine_seconds(began, began + wall) + eval_s
    return {"timing/wall_s": wall, "timing/trainer_idle_frac": (train_start - began - eval_s) / wall,
            "timing/engine_idle_frac": max(0.0, 1 - engine_busy / wall),
            "timeline/rollout_start": batch.began - t0, "timeline/rollout_end": batch.ended - t0,
            "timeline/train_start": train_start - t0, "timeline/train_end": time.monotonic() - t0}


def train(cfg: Config, run_dir: str) -> Actors:
    """The whole run; returns the actors (still alive) so that callers can inspect them."""
    model_path = resolve_model(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    checkpoint = check_resume(cfg, run_dir, model_path)  # a bad checkpoint fails here, before any actor starts
    start_ray(cfg.ray_address, Placement.logical_cpus(cfg.roles(), cfg.placement))
    actors = build_actors(cfg, model_path, tokenizer)

    step = 0
    if checkpoint:
        step = restore_checkpoint(checkpoint, actors.policy, actors.rollout, run_dir)
        actors.weights.send(step, verify=True)  # the engines serve the resumed weights

    logger = make_logger(cfg, run_dir)
    initial_data = actors.rollout.state()
    newest_checkpoint = lambda: last_checkpoint(cfg, run_dir, model_path)  # noqa: E731
    recovery = Recovery(actors, cfg.fault, run_dir,
                        lambda: roll_back(actors, newest_checkpoint(), run_dir, initial_data), newest_checkpoint)
    new_producer = lambda first: RolloutProducer(  # noqa: E731
        actors.rollout, lambda s: derive_seed(cfg.seed, "step", s), cfg.rollout.group_size,
        cfg.rollout.temperature, first, cfg.steps, cfg.schedule.max_staleness, cfg.schedule.batch_timeout_s)
    producer = new_producer(step)
    eval_due = lambda step: cfg.eval.every > 0 and step % cfg.eval.every == 0  # noqa: E731
    bar = tqdm(desc="GRPO", initial=step, total=cfg.steps, disable=not cfg.logging.progress_bar,
               dynamic_ncols=True)
    t0, skipped = time.monotonic(), 0
    with StopRequest() as stop:
        while step < cfg.steps and not stop.requested:
            attempt = StepAttempt(step, producer.data_state(step))  # how far the step got, if it fails
            try:
                recovery.check()  # an actor restarted between two calls (an idle engine) lost its state
                metrics = evaluate(step, cfg, actors.rollout, run_dir) if eval_due(step) else {}
                attempt.metrics = metrics
                attempt.phase = "rollout"
                producer.allow(step)  # the batches up to step + k may be collected now
                batch = producer.take(step)  # 1-2. generated and rewarded
                train_start = time.monotonic()
                attempt.phase = "update"
                # 3-5. reference log-probs, advantages, policy update
                metrics.update(grpo_step(step, cfg, actors, batch, skipped))
                metrics.update(batch.progress)
                attempt.updated, attempt.phase = True, "sync"
                sync_weights(step, cfg, actors, metrics)  # 6.
                with timed(metrics, "memory"):  # memory/<role>_rss_gb of every actor and the driver
                    metrics.update(memory_metrics(actors.named(), cfg.fault.call_timeout_s))
                metrics.update(wall_timings(producer, batch, attempt.began, train_start, t0, metrics))
                metrics.update(recovery.metrics())
                logger.log(metrics, step)  # 7.
                attempt.logged = True
                bar.update(1)
                bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}",
                                step_s=f"{metrics['timing/wall_s']:.1f}")
                skipped = int(metrics["train/skipped_in_a_row"])
                stop_if_skipping(skipped, cfg.train.max_skipped_updates_in_a_row)
                attempt.phase = "checkpoint"
                if checkpoint_due(cfg, step + 1, cfg.steps) or stop.requested:
                    save_checkpoint(step + 1, cfg, actors.policy, producer.data_state(step + 1), run_dir)
                recovery.step_done()
                step += 1
            except Exception as error:  # an actor died or hung: restart it and go on, or stop
                step = recovery.resume(error, attempt, producer, logger.log)
                producer = new_producer(step)
                bar.n = step
                bar.refresh()
    producer.close()
    if stop.requested:
        print(f"stopped by {stop.signal} after {step} of {cfg.steps} steps, with a checkpoint: "
              "resume=true goes on", flush=True)
    elif cfg.eval.every > 0:  # and once after the last update
        logger.log(evaluate(cfg.steps, cfg, actors.rollout, run_dir), cfg.steps)
    logger.close()
    print("report:", ", ".join(write_report(run_dir)), flush=True)
    return actors


def roll_back(actors: Actors, checkpoint: str | None, run_dir: str, initial_data: dict) -> int:
    """The policy's ranks restarted: back to the last `checkpoint` (weights, optimizer, task source,
    metrics), or to the first weights, which the ranks loaded again, if none was saved yet."""
    if checkpoint is not None:
        return restore_checkpoint(checkpoint, actors.policy, actors.rollout, run_dir)
    actors.rollout.load_state(initial_data)
    drop_metrics_from(run_dir, 0)
    return 0


def main(argv: list[str] | None = None) -> str:
    return launch(argv, __doc__, Config, validate, lambda cfg, run_dir, _: train(cfg, run_dir).shutdown())


if __name__ == "__main__":
    main()
