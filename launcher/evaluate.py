"""Held-out evaluation of a model on its own: greedy accuracy, pass@k, response length, format rate.

    python launcher/evaluate.py --config configs/grpo_countdown3_cpu.yaml model.path=runs/.../final

pass@1: eval.num_samples samples per problem at eval.temperature and eval.top_p (R1 reports it from
8 samples at 0.6 and 0.95, as configs/grpo_reasoning_gym_cpu.yaml sets), their mean correctness; greedy
accuracy beside it (eval/accuracy, per task eval/<task>/greedy).

The tasks are the held-out split of the config's data (or env seeds), the ones GRPO evaluates
on, so figures of a GRPO run, an SFT output and the pipeline's stages compare like with like.
Writes RUN_DIR/eval.json and the greedy samples to RUN_DIR/eval/.
"""

from __future__ import annotations

import json
import os

from tqdm import tqdm
from transformers import AutoTokenizer

from actors.cluster import build_evaluation, start_ray
from actors.placement import Placement
from launcher.lifecycle import launch
from system.config.checks import validate
from system.config.grpo import Config
from system.reporting.evaluation import eval_metrics, solved, write_samples
from system.models import resolve_model
from system.seeds import derive_seed


def evaluate(step: int, cfg: Config, rollout, run_dir: str) -> dict:
    """Greedy accuracy and pass@k on held-out tasks that training never sees: data rows, or
    whole episodes on env seeds that training never plays."""
    # the same samples for every eval of a run: curves compare like with like
    seed = derive_seed(cfg.seed, "eval")
    tasks, n = rollout.eval_tasks(), cfg.eval.num_samples
    # minutes on a CPU: say what it is doing
    with tqdm(total=len(tasks) * (1 + n), desc=f"eval step {step}", unit="sample", dynamic_ncols=True,
              leave=None, disable=not cfg.logging.progress_bar) as bar:
        bar.set_postfix_str(f"greedy, {len(tasks)} tasks")
        greedy = rollout.collect(tasks, seed, 1, 0.0)
        bar.update(len(tasks))
        bar.set_postfix_str(f"{n} samples at T={cfg.eval.temperature}, top-p {cfg.eval.top_p}")
        sampled = rollout.collect(tasks, seed, n, cfg.eval.temperature, cfg.eval.top_p)
        bar.update(len(tasks) * n)
    metrics = eval_metrics(greedy, sampled, n, cfg.eval.pass_k, rollout.correctness)
    correct = solved(greedy.scores, rollout.correctness, greedy.rewards)
    write_samples(run_dir, step, rollout.describe(tasks), greedy.texts, greedy.rewards, correct,
                  cfg.eval.num_logged)
    return {**metrics, "timing/eval_s": sum(greedy.timings.values()) + sum(sampled.timings.values())}


def evaluate_model(cfg: Config, run_dir: str) -> dict:
    """Start the engines and reward workers of `cfg` on model.path, evaluate, shut them down."""
    model_path = resolve_model(cfg.model.path)
    start_ray(cfg.ray_address, Placement.logical_cpus(cfg.roles(), cfg.placement))
    actors = build_evaluation(cfg, model_path, AutoTokenizer.from_pretrained(model_path))
    try:
        metrics = evaluate(0, cfg, actors.rollout, run_dir)
    finally:
        actors.shutdown()
    with open(os.path.join(run_dir, "eval.json"), "w") as f:
        json.dump({"model": cfg.model.path, **metrics}, f, indent=2)
    shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k.startswith("eval/"))
    print(f"eval: {shown}", flush=True)
    return metrics


def main(argv: list[str] | None = None) -> str:
    return launch(argv, __doc__, Config, validate, lambda cfg, run_dir, _: evaluate_model(cfg, run_dir))


if __name__ == "__main__":
    main()
