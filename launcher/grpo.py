"""GRPO with rule-based rewards (the R1-Zero recipe), every role in its own Ray actor.

    python launcher/grpo.py --config configs/grpo_countdown_cpu.yaml [key.sub=value ...]
    ray job submit --working-dir . -- python launcher/grpo.py --config configs/grpo_countdown_cpu.yaml

One step:  generate (vLLM engines) -> reward (reward workers) -> reference log-probs
           -> group-normalised advantages -> clipped policy update (DeepSpeed ranks)
           -> weight sync to the engines (NCCL / gloo) -> log.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ray  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from actors.cluster import build_actors, start_ray  # noqa: E402
from actors.dashboard import dashboard_sink  # noqa: E402
from actors.placement import Placement  # noqa: E402
from actors.single_turn import single_turn_rollout  # noqa: E402
from system.algorithms.advantages import get_advantage, zero_variance_groups  # noqa: E402
from system.algorithms.kl import kl_penalty  # noqa: E402
from system.checkpoint import (complete_checkpoint, latest_checkpoint, load_driver_state,  # noqa: E402
                               save_driver_state, temp_checkpoint_dir)
from system.config import Config, ConfigError, load_config, save_config, to_yaml, validate  # noqa: E402
from system.data import load_splits  # noqa: E402
from system.data.sampler import PromptSampler  # noqa: E402
from system.evaluation import correctness_reward, eval_metrics, solved, write_samples  # noqa: E402
from system.metrics import MetricsLogger, timed  # noqa: E402
from system.models import resolve_model  # noqa: E402
from system.report import write_report  # noqa: E402
from system.rollout.multiturn import eval_seeds, response_token_budget, train_seeds  # noqa: E402
from system.rollout.sequences import make_sequence, split_for_training  # noqa: E402

def grpo_step(step: int, cfg, actors, sampler: PromptSampler, tokenizer) -> dict:
    timings: dict[str, float] = {}
    n = cfg.rollout.group_size
    seed = (cfg.seed * 100_003 + step) * 10_007

    # 1-2. Rollout: n samples per prompt or env seed (a GRPO group, contiguous), each with its reward.
    if actors.envs is not None:  # multi-turn: the policy acts in environments (actors/env.py)
        from actors.env import multi_turn_rollout

        env_seeds = train_seeds(seed, cfg.prompts_per_step)  # even; held-out eval seeds are odd
        rollouts = multi_turn_rollout(env_seeds, actors.engines, actors.envs, tokenizer, cfg, seed, timings, n,
                                      cfg.rollout.temperature)
    else:
        rows = sampler.next_batch()
        rollouts = single_turn_rollout(rows, actors.engines, actors.rewards, tokenizer, cfg, seed, timings, n,
                                       cfg.rollout.temperature)
    valid = torch.tensor([r is not None for r in rollouts.rewards])
    rewards = torch.tensor([r if r is not None else 0.0 for r in rollouts.rewards], dtype=torch.float32)
    seqs = [make_sequence(*sample) for sample in zip(rollouts.tokens, rollouts.loss_mask, rollouts.logprobs)]

    # 3. Reference log-probs, for the KL penalty (in the loss, or subtracted from the reward).
    kl_seq = None
    if actors.reference is not None:
        with timed(timings, "reference"):
            k = len(actors.reference.actors)
            shards = [seqs[len(seqs) * i // k: len(seqs) * (i + 1) // k] for i in range(k)]
            ref_logps = [lp for part in ray.get(actors.reference.call_sharded("logprobs", shards)) for lp in part]
        for s, ref in zip(seqs, ref_logps):
            s["ref_logp"] = ref
        kl_seq = torch.stack([(kl_penalty(s["rollout_logp"], s["ref_logp"], cfg.algorithm.kl_estimator)
                               * s["loss_mask"]).sum() for s in seqs])
        if cfg.algorithm.kl_in_reward:
            rewards = rewards - cfg.algorithm.kl_coef * kl_seq

    # 4. Advantages: normalise each reward within its group; unscorable samples carry no loss.
    advantages = get_advantage(cfg.algorithm.advantage)(rewards, valid, n)
    flat_groups = zero_variance_groups(rewards, valid, n)
    for s, adv, ok, flat in zip(seqs, advantages.tolist(), valid.tolist(), flat_groups.tolist()):
        s["advantage"] = adv
        if not ok or (flat and cfg.algorithm.filter_zero_variance_groups):
            s["loss_mask"] = torch.zeros_like(s["loss_mask"])

    # 5. Update the policy: clipped surrogate (+ KL) over mini-batches, sharded over DP ranks.
    max_response = cfg.rollout.max_new_tokens  # Dr. GRPO's length constant: the most tokens a sample holds
    if actors.envs is not None:  # an episode: every turn's reply
        max_response = response_token_budget(actors.envs.max_turns, max_response, cfg.env.max_context_tokens)
    with timed(timings, "train"):
        shards = split_for_training(seqs, cfg.train.num_minibatches, cfg.train.num_ranks, cfg.algorithm.loss_agg,
                                    max_response, seed=cfg.seed + step)
        per_rank = ray.get(actors.policy.call_sharded("update", shards))

    # 6. Sync the new weights into every engine (skipped only to show what a stale engine looks like).
    verify = cfg.sync.enabled and cfg.sync.verify_every > 0 and step % cfg.sync.verify_every == 0
    if cfg.sync.enabled:
        with timed(timings, "sync"):
            actors.sync(verify)  # raises on a checksum mismatch

    lengths = torch.tensor(rollouts.response_lengths, dtype=torch.float32)
    return {
        **step_metrics(cfg, rollouts.scores, rewards, valid, flat_groups, kl_seq, per_rank),
        "response/length_mean": lengths.mean().item(),
        "response/length_max": lengths.max().item(),
        "response/clipped_frac": sum(r != "stop" for r in rollouts.finish_reasons) / len(seqs),
        **({"sync/checksum_ok": 1.0} if verify else {}),
        "throughput/generated_tokens_per_s": lengths.sum().item() / timings["timing/generate_s"],
        **timings,
        "timing/step_s": sum(timings.values()),
    }


def step_metrics(cfg, scores, rewards, valid, flat_groups, kl_seq, per_rank: list[dict]) -> dict:
    total = {key: sum(r[key] for r in per_rank) for key in per_rank[0] if not key.endswith("_max")}
    tokens = max(total["tokens"], 1.0)
    metrics = {
        "reward/mean": rewards[valid].mean().item() if valid.any() else 0.0,
        "reward/std": rewards[valid].std().item() if valid.sum() > 1 else 0.0,
        "reward/unscorable_frac": 1 - valid.float().mean().item(),
        "groups/zero_variance_frac": flat_groups.float().mean().item(),
        "kl/mean": kl_seq.mean().item() if kl_seq is not None else 0.0,
        "train/loss": total["loss"] / total["optimizer_steps"] * len(per_rank),
        "train/clip_frac": total["clip_count"] / (tokens * cfg.train.ppo_epochs),
        "train/entropy": total["entropy_sum"] / tokens,
        "train/grad_norm": per_rank[0]["grad_norm"],
        "train/lr": per_rank[0]["lr"],
        "sync/logprob_abs_diff_mean": total["sync/logprob_diff_sum"] / max(total["sync/tokens"], 1.0),
        "sync/logprob_abs_diff_max": max(r["sync/logprob_diff_max"] for r in per_rank),
    }
    for name, values in scores.items():
        scored = [v for v in values if v is not None]
        key = name if name.startswith("env/") else f"reward/{name}/mean"  # env statistics keep their names
        metrics[key] = sum(scored) / len(scored) if scored else 0.0
    correctness = "env/success" if cfg.env.cls else correctness_reward(cfg.reward.functions)
    if correctness:
        metrics["reward/accuracy"] = sum(solved(scores, correctness, [])) / len(scores[correctness])
    return metrics


def make_run_dir(cfg, config_path: str | None) -> str:
    """runs/<run_name or config-time>; when resuming, the directory of the run being resumed."""
    stem = os.path.splitext(os.path.basename(config_path or "grpo"))[0]
    if cfg.resume and os.path.isdir(cfg.resume):  # a checkpoint: RUN_DIR/checkpoints/step_N
        return os.path.dirname(os.path.dirname(os.path.abspath(cfg.resume)))
    if cfg.resume and not cfg.logging.run_name:  # the newest run of this config
        runs = sorted(glob.glob(os.path.join(os.path.abspath(cfg.logging.output_dir), f"{stem}-*")), key=os.path.getmtime)
        if not runs:
            raise FileNotFoundError(f"resume: no run of {stem} under {cfg.logging.output_dir}")
        return runs[-1]
    name = cfg.logging.run_name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = os.path.abspath(os.path.join(cfg.logging.output_dir, name))
    os.makedirs(run_dir, exist_ok=True)
    return run_dir


def evaluate(step: int, cfg, actors, eval_rows: list[dict], tokenizer, run_dir: str) -> dict:
    """Greedy accuracy and pass@k on held-out problems that training never sees: data rows, or
    whole episodes on env seeds that training never plays."""
    timings: dict[str, float] = {}
    seed = 999_983 * (cfg.seed + 1)  # the same samples for every eval of a run: curves compare like with like
    if actors.envs is not None:
        from actors.env import multi_turn_rollout as rollout

        problems, pool, correctness = eval_seeds(cfg.env.num_eval_seeds), actors.envs, "env/success"
        prompts = [f"{cfg.env.cls}, seed {s}" for s in problems]
    else:
        rollout, problems, pool = single_turn_rollout, eval_rows, actors.rewards
        correctness = correctness_reward(cfg.reward.functions)
        prompts = [r["messages"][-1]["content"] for r in eval_rows]
    greedy = rollout(problems, actors.engines, pool, tokenizer, cfg, seed, timings, 1, 0.0)
    sampled = rollout(problems, actors.engines, pool, tokenizer, cfg, seed, timings, cfg.eval.num_samples,
                      cfg.eval.temperature)
    metrics = eval_metrics(greedy, sampled, cfg.eval.num_samples, cfg.eval.pass_k, correctness)
    correct = solved(greedy.scores, correctness, greedy.rewards)
    write_samples(run_dir, step, prompts, greedy.texts, greedy.rewards, correct, cfg.eval.num_logged)
    return {**metrics, "timing/eval_s": sum(timings.values())}


def save_checkpoint(step: int, cfg, trainer, sampler: PromptSampler, run_dir: str) -> str:
    """`step` = updates done so far = the step a resumed run starts with (trainer: the ranks' ActorGroup)."""
    tmp = temp_checkpoint_dir(run_dir, step)
    ray.get(trainer.call("save_checkpoint", tmp))
    save_driver_state(tmp, step, sampler.state(), os.path.join(run_dir, "metrics.jsonl"))
    return complete_checkpoint(tmp, cfg.checkpoint.keep_last)


def restore_checkpoint(cfg, trainer, sampler: PromptSampler, run_dir: str) -> int:
    """Continue exactly: weights, optimizer, data position, RNGs, metrics so far; returns the next step."""
    checkpoint = cfg.resume if os.path.isdir(cfg.resume) else latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"resume: no complete checkpoint in {run_dir}/checkpoints")
    state = load_driver_state(checkpoint, os.path.join(run_dir, "metrics.jsonl"))
    sampler.load_state(state["sampler"])
    ray.get(trainer.call("load_checkpoint", checkpoint))
    print(f"resumed from {checkpoint} at step {state['step']}", flush=True)
    return state["step"]


def train(cfg, run_dir: str):
    """The whole run; returns the actors (still alive) so that callers can inspect them."""
    model_path = resolve_model(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    train_rows, eval_rows = load_splits(cfg.data)
    sampler = PromptSampler(train_rows, cfg.prompts_per_step, cfg.seed)
    start_ray(cfg.ray_address, Placement.logical_cpus(cfg))
    actors = build_actors(cfg, model_path, tokenizer.pad_token_id)

    start = 0
    if cfg.resume:
        start = restore_checkpoint(cfg, actors.policy, sampler, run_dir)
        actors.sync(verify=True)  # the engines serve the resumed weights

    logger = MetricsLogger(run_dir, {"yaml": to_yaml(cfg)}, cfg.logging.wandb_mode, cfg.logging.wandb_project,
                           os.path.basename(run_dir), extra_sinks=[dashboard_sink(os.path.basename(run_dir))])
    eval_due = lambda step: cfg.eval.every > 0 and step % cfg.eval.every == 0  # noqa: E731
    bar = tqdm(range(start, cfg.steps), desc="GRPO", initial=start, total=cfg.steps,
               disable=not cfg.logging.progress_bar, dynamic_ncols=True)
    for step in bar:
        metrics = evaluate(step, cfg, actors, eval_rows, tokenizer, run_dir) if eval_due(step) else {}
        metrics.update(grpo_step(step, cfg, actors, sampler, tokenizer))
        metrics.update({"data/epoch": sampler.epoch, "data/position": sampler.position})
        logger.log(metrics, step)
        bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", step_s=f"{metrics['timing/step_s']:.1f}")
        done = step + 1
        if (cfg.checkpoint.every and done % cfg.checkpoint.every == 0) or (done == cfg.steps and cfg.checkpoint.save_final):
            save_checkpoint(done, cfg, actors.policy, sampler, run_dir)
    if cfg.eval.every > 0:  # and once after the last update
        logger.log(evaluate(cfg.steps, cfg, actors, eval_rows, tokenizer, run_dir), cfg.steps)
    logger.close()
    print("report:", ", ".join(write_report(run_dir)), flush=True)
    return actors


def main(argv: list[str] | None = None) -> str:
    return launch(argv, __doc__, Config, validate, lambda cfg, run_dir, _: train(cfg, run_dir).shutdown())


def launch(argv: list[str] | None, doc: str, schema: type, check, run) -> str:
    """Every launcher's command line: `--config FILE key.sub=value ...` -> the config in `schema`
    (exit 2 with the message on a config error) -> the run directory with config.yaml
    -> run(cfg, run_dir, config_path)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (configs/...)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. rollout.group_size=8")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides, schema=schema, check=check)
    except ConfigError as e:
        parser.exit(2, f"config error: {e}\n")
    run_dir = make_run_dir(cfg, args.config)
    save_config(cfg, os.path.join(run_dir, "config.yaml"))
    print(f"run directory: {run_dir}", flush=True)
    started_here = not ray.is_initialized() and not (cfg.ray_address or os.environ.get("RAY_ADDRESS"))
    run(cfg, run_dir, args.config)
    if started_here:
        ray.shutdown()
    return run_dir


if __name__ == "__main__":
    main()
