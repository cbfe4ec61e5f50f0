"""GRPO through the real stack: Ray actors, vLLM engine, DeepSpeed policy and reference,
reward workers and gloo weight sync, with the tiny random model (fast) on generated Countdown."""

import os

import pytest
import torch

from launcher.grpo import train
from system.config.grpo import load_config
from system.reporting.metrics import read_metrics
from tests.probes import engine_logprobs, trainer_logprobs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_RUN = [
    "model.path=tiny", "steps=2", "prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=16",
    "rollout.max_model_len=256", "train.lr=1e-3", "train.micro_batch_size=8", "algorithm.kl_coef=0.01",
    "reward.functions={countdown: 1.0, format: 0.5, tests.user_plugins:response_length: 1.0}",
    "reward.num_workers=2", "logging.wandb_mode=disabled",
    "logging.progress_bar=false", "sync.bucket_mb=4", "sync.verify_every=1", "eval.every=0",
    "checkpoint.save_final=false",
]
EXPECTED_KEYS = [
    "reward/mean", "reward/std", "reward/countdown/mean", "reward/format/mean", "reward/accuracy", "kl/mean",
    "train/clip_frac", "train/entropy", "response/length_mean", "response/length_max",
    "response/clipped_frac",
    "train/grad_norm", "train/lr", "timing/generate_s", "timing/reward_s", "timing/reference_s",
    "timing/train_s",
    "timing/sync_s", "throughput/generated_tokens_per_s", "sync/checksum_ok", "sync/logprob_abs_diff_mean",
    "sync/logprob_abs_diff_max", "groups/zero_variance_frac",
]


def run(tmp_path, *overrides):
    cfg = load_config(os.path.join(ROOT, "configs", "grpo_countdown_cpu.yaml"),
                      TINY_RUN + [f"logging.output_dir={tmp_path}", "logging.run_name=run", *overrides])
    run_dir = os.path.join(str(tmp_path), "run")
    os.makedirs(run_dir)
    return train(cfg, run_dir), read_metrics(run_dir)


def initial_logprobs(model_path, seq):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16)
    logits = model(torch.tensor([seq])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(seq[1:]).unsqueeze(-1)).squeeze(-1)


@pytest.mark.e2e
def test_two_grpo_steps_update_and_sync_the_engine(ray_job, tiny_model, tmp_path):
    # Two data-parallel policy ranks under ZeRO-3: gradients are averaged over ranks and the
    # partitioned parameters are gathered before each bucket is sent.
    # Packed micro-batches of at most 200 tokens (~2 of the ~90-token sequences): each rank runs
    # several, as many as the other rank (ZeRO-3 gathers in every forward); the reference too.
    # lr 2e-3: two updates move the engine's log-probs well clear of bf16 noise (~0.005 at step 0).
    actors, metrics = run(tmp_path, "train.num_ranks=2", "train.zero_stage=3", "placement.policy_cpus=0.25",
                          "train.lr=2e-3", "train.max_tokens_per_microbatch=200")
    assert [m["step"] for m in metrics] == [0, 1]
    for m in metrics:
        assert not [k for k in EXPECTED_KEYS if k not in m], "missing metric keys"
        assert m["sync/checksum_ok"] == 1.0
        assert m["sync/logprob_abs_diff_mean"] < 0.05 and m["sync/logprob_abs_diff_max"] < 0.5  # bf16 noise

    # The engine's policy moved away from the initial weights and now equals the trainer's.
    seq = list(range(100, 140))
    engine = torch.tensor(engine_logprobs(actors.engines.engines[0], [seq])[0])
    trainer = trainer_logprobs(actors.policy, seq)
    before = initial_logprobs(tiny_model, seq)
    moved, disagree = (engine - before).abs().mean(), (engine - trainer).abs().mean()
    print(f"engine vs initial weights {moved:.4f}, engine vs trainer {disagree:.4f}")
    # A stale engine: moved ~0.005 (bf16 noise) and disagree = how far the trainer went. bf16 noise
    # grows with the distance from the initial weights, so the check is relative.
    assert moved > 0.02, "engine still serves the initial weights"
    assert disagree < moved / 2, "the engine is not serving the trainer's weights after sync"
    actors.shutdown()


@pytest.mark.e2e
def test_skipped_sync_shows_in_the_logprob_check(ray_job, tmp_path):
    # The user's own advantage estimator and correctness reward, named on the command line.
    user_reward = "tests.user_plugins:even_length"
    actors, metrics = run(tmp_path, "sync.enabled=false",
                          "algorithm.advantage=tests.user_plugins:leave_one_out",
                          f"reward.functions={{format: 0.5, {user_reward}: 1.0}}")
    assert metrics[0]["sync/logprob_abs_diff_mean"] < 0.05  # step 0: engine and trainer start equal
    assert metrics[1]["sync/logprob_abs_diff_mean"] > 0.1  # step 1: the engine sampled with stale weights
    for m in metrics:  # accuracy follows the reward that says it measures correctness
        assert m["reward/accuracy"] == m[f"reward/{user_reward}/mean"]
    actors.shutdown()
