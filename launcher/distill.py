"""Distillation data by rejection sampling (R1's cold-start data and its stage-3 SFT data; how
Bespoke-Stratos-17k and open-r1's distilled sets were made): a teacher served by vLLM engine
actors samples n reasoning traces per problem, the reward workers verify each, the correct ones
are kept as chats for SFT. The teacher may also be a program (`teacher: countdown_search`, a
solver that writes search traces: system/teachers/), verified the same way.

    python launcher/distill.py --config configs/distill_countdown_cpu.yaml [key.sub=value ...]

One chunk:  sample n traces per problem (engines) -> verify (reward workers) -> keep the correct,
            complete, distinct ones (or the shortest) -> append them and mark the problems done.
A killed run continues where it stopped: `resume=true`, or the same `logging.run_name`.
Output: RUN_DIR/data.jsonl (+ data.parquet), loadable with `datasets.load_dataset("json", ...)`,
and RUN_DIR/stats.json (see system/teachers/rejection_sampling.py).
"""

from __future__ import annotations

import json

from tqdm import tqdm
from transformers import AutoTokenizer

from actors.cluster import build_teacher, start_ray
from actors.placement import Placement
from launcher.lifecycle import launch, make_logger
from system.data import drop_overlong, load_splits
from system.teachers.rejection_sampling import TraceStore, problem_id, rejection_sample
from system.reporting.evaluation import solved
from system.models import resolve_model
from system.config.recipe import DistillConfig, validate_distill
from system.seeds import derive_seed


def distill_chunk(rows: list[dict], cfg, teacher, store: TraceStore) -> dict:
    n = cfg.rollout.group_size
    # a different seed for every chunk, also after a resume
    seed = derive_seed(cfg.seed, "distill", len(store.done))
    rollouts = teacher.collect(rows, seed, n, cfg.rollout.temperature)
    correct = solved(rollouts.scores, teacher.correctness, rollouts.rewards)
    finished = [reason == "stop" for reason in rollouts.finish_reasons]
    traces, progress = rejection_sample(rows, rollouts.texts, rollouts.response_lengths, correct, finished, n,
                                        cfg.keep, cfg.data.source, rollouts.earlier)
    store.append(traces, progress)
    lengths = rollouts.response_lengths
    return {
        "distill/correct_rate": sum(correct) / len(correct),
        "distill/kept_rate": len(traces) / len(correct),
        "distill/solve_rate": sum(p["correct"] > 0 for p in progress) / len(progress),
        "distill/problems_done": len(store.done),
        "response/length_mean": sum(lengths) / len(lengths),
        "response/clipped_frac": 1 - sum(finished) / len(finished),
        "throughput/generated_tokens_per_s": sum(lengths) / rollouts.timings["timing/generate_s"],
        **rollouts.timings,
    }


def distill(cfg, run_dir: str) -> str:
    """The whole run, continuing what the run directory holds; returns the path of data.jsonl."""
    model_path = resolve_model(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    problems, _ = drop_overlong(load_splits(cfg.data), tokenizer, cfg)  # prompts the engine can take
    store = TraceStore(run_dir)
    todo = list({problem_id(r): r for r in problems if problem_id(r) not in store.done}.values())
    print(f"distill: {len(store.done)} problems done before, {len(todo)} to do", flush=True)

    if todo:
        start_ray(cfg.ray_address, Placement.logical_cpus(cfg.roles(), cfg.placement))
        teacher = build_teacher(cfg, model_path, tokenizer)  # engines sampling the model, or a program
        logger = make_logger(cfg, run_dir)
        chunks = range(0, len(todo), cfg.chunk_size)
        for start in tqdm(chunks, desc="distill", disable=not cfg.logging.progress_bar, dynamic_ncols=True):
            metrics = distill_chunk(todo[start:start + cfg.chunk_size], cfg, teacher.rollout, store)
            logger.log(metrics, len(store.done))  # step: problems done
        logger.close()
        teacher.shutdown()

    stats = store.finish()
    print(f"distill stats: {json.dumps({k: v for k, v in stats.items() if k != 'per_source'})}", flush=True)
    return store.data_path


def main(argv: list[str] | None = None) -> str:
    return launch(argv, __doc__, DistillConfig, validate_distill,
                  lambda cfg, run_dir, _: distill(cfg, run_dir))


if __name__ == "__main__":
    main()
