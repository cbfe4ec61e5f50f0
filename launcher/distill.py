"""Distillation data by rejection sampling (R1's cold-start data and its stage-3 SFT data; how
Bespoke-Stratos-17k and open-r1's distilled sets were made): a teacher served by vLLM engine
actors samples n reasoning traces per problem, the reward workers verify each, the correct ones
are kept as chats for SFT.

    python launcher/distill.py --config configs/distill_countdown_cpu.yaml [key.sub=value ...]

One chunk:  sample n traces per problem (engines) -> verify (reward workers) -> keep the correct,
            complete, distinct ones (or the shortest) -> append them and mark the problems done.
A killed run continues where it stopped: `resume=true`, or the same `logging.run_name`.
Output: RUN_DIR/data.jsonl (+ data.parquet), loadable with `datasets.load_dataset("json", ...)`,
and RUN_DIR/stats.json (see system/distill.py).
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ray  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from actors.cluster import start_ray  # noqa: E402
from actors.placement import Placement  # noqa: E402
from actors.reward import RewardPool  # noqa: E402
from actors.rollout import start_engines  # noqa: E402
from actors.single_turn import single_turn_rollout  # noqa: E402
from launcher.grpo import launch  # noqa: E402
from system.config import to_yaml  # noqa: E402
from system.data import load_splits  # noqa: E402
from system.distill import TraceStore, problem_id, rejection_sample  # noqa: E402
from system.evaluation import correctness_reward, solved  # noqa: E402
from system.metrics import MetricsLogger  # noqa: E402
from system.models import resolve_model  # noqa: E402
from system.recipe_config import DistillConfig, placement_view, validate_distill  # noqa: E402


def distill_chunk(rows: list[dict], cfg, engines, rewards, tokenizer, store: TraceStore) -> dict:
    n, timings = cfg.rollout.group_size, {}
    seed = cfg.seed * 1_000_003 + len(store.done)  # a different seed for every chunk, also after a resume
    rollouts = single_turn_rollout(rows, engines, rewards, tokenizer, cfg, seed, timings, n, cfg.rollout.temperature)
    correct = solved(rollouts.scores, correctness_reward(cfg.reward.functions), rollouts.rewards)
    finished = [reason == "stop" for reason in rollouts.finish_reasons]
    traces, progress = rejection_sample(rows, rollouts.texts, rollouts.response_lengths, correct, finished, n,
                                        cfg.keep, cfg.data.source)
    store.append(traces, progress)
    lengths = rollouts.response_lengths
    return {
        "distill/correct_rate": sum(correct) / len(correct),
        "distill/kept_rate": len(traces) / len(correct),
        "distill/solve_rate": sum(p["correct"] > 0 for p in progress) / len(progress),
        "distill/problems_done": len(store.done),
        "response/length_mean": sum(lengths) / len(lengths),
        "response/clipped_frac": 1 - sum(finished) / len(finished),
        "throughput/generated_tokens_per_s": sum(lengths) / timings["timing/generate_s"],
        **timings,
    }


def distill(cfg, run_dir: str) -> str:
    """The whole run, continuing what the run directory holds; returns the path of data.jsonl."""
    model_path = resolve_model(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    problems, _ = load_splits(cfg.data)
    store = TraceStore(run_dir)
    todo = list({problem_id(r): r for r in problems if problem_id(r) not in store.done}.values())
    print(f"distill: {len(store.done)} problems done before, {len(todo)} to do", flush=True)

    if todo:
        view = placement_view(cfg)  # engines and reward workers only
        start_ray(cfg.ray_address, Placement.logical_cpus(view))
        placement = Placement(view, ray.cluster_resources().get("GPU", 0) > 0)
        engines = start_engines(cfg, placement, model_path)
        rewards = RewardPool(list(cfg.reward.functions), cfg.reward.num_workers, placement.options("reward"))
        logger = MetricsLogger(run_dir, {"yaml": to_yaml(cfg)}, cfg.logging.wandb_mode, cfg.logging.wandb_project,
                               os.path.basename(run_dir))
        chunks = range(0, len(todo), cfg.chunk_size)
        for start in tqdm(chunks, desc="distill", disable=not cfg.logging.progress_bar, dynamic_ncols=True):
            metrics = distill_chunk(todo[start:start + cfg.chunk_size], cfg, engines, rewards, tokenizer, store)
            logger.log(metrics, len(store.done))  # step: problems done
        logger.close()
        for actor in engines + rewards.workers:
            ray.kill(actor)
        placement.remove()

    stats = store.finish()
    print(f"distill stats: {json.dumps({k: v for k, v in stats.items() if k != 'per_source'})}", flush=True)
    return store.data_path


def main(argv: list[str] | None = None) -> str:
    return launch(argv, __doc__, DistillConfig, validate_distill, lambda cfg, run_dir, _: distill(cfg, run_dir))


if __name__ == "__main__":
    main()
