"""Multi-turn GRPO through the real stack: env workers, vLLM engine, DeepSpeed policy and reference,
gloo weight sync; 2 steps of the 24 game with the tiny random model, and env-mode evaluation on 2
held-out seeds before the first and after the last update."""

import json
import os
import re

import pytest
import torch

from launcher.grpo import train
from system.config.grpo import load_config
from system.reporting.metrics import read_metrics
from system.rollout.multiturn import EpisodeRollout
from tests.probes import engine_logprobs
from tests.test_multiturn import segments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_RUN = [
    "model.path=tiny", "steps=2", "prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=16",
    "rollout.max_model_len=512", "env.max_context_tokens=512", "env.params.max_turns=2", "env.num_workers=2",
    "train.lr=1e-3", "train.micro_batch_size=4", "algorithm.kl_coef=0.01", "logging.wandb_mode=disabled",
    "logging.progress_bar=false", "sync.bucket_mb=4", "sync.verify_every=1", "checkpoint.save_final=false",
    "eval.every=2", "env.num_eval_seeds=2", "eval.num_samples=2", "eval.pass_k=[1,2]",
]
EVAL_KEYS = ["eval/reward_mean", "eval/accuracy", "eval/pass@1", "eval/pass@2", "eval/turns",
             "eval/invalid_actions"]
EXPECTED_KEYS = ["reward/mean", "reward/accuracy", "env/success", "env/turns", "env/invalid_actions",
                 "response/length_mean", "timing/generate_s", "timing/env_s", "sync/logprob_abs_diff_mean"]
# What may follow a reply: the end of turn the model did not write, the env's user turn, the assistant
# turn opened and started with the recipe's response prefix ("<answer>").
OBSERVATION = re.compile(
    r"(<\|im_end\|>)?\n<\|im_start\|>user\n.+<\|im_end\|>\n<\|im_start\|>assistant\n<answer>", re.S)


@pytest.mark.e2e
def test_two_multi_turn_grpo_steps(ray_job, tiny_model, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    calls = []  # per rollout: env seeds, episodes per seed, temperature, the rollouts, the engine's log-probs
    real = EpisodeRollout.collect

    def recording(self, env_seeds, seed, n, temperature, top_p=None):
        rollouts = real(self, env_seeds, seed, n, temperature, top_p)
        calls.append((env_seeds, n, temperature, rollouts,
                      engine_logprobs(self.engines.engines[0], rollouts.tokens)))
        return rollouts

    monkeypatch.setattr(EpisodeRollout, "collect", recording)
    cfg = load_config(os.path.join(ROOT, "configs", "grpo_24point_cpu.yaml"),
                      TINY_RUN + [f"logging.output_dir={tmp_path}", "logging.run_name=run"])
    run_dir = os.path.join(str(tmp_path), "run")
    os.makedirs(run_dir)
    trained = train(cfg, run_dir)
    metrics = read_metrics(run_dir)

    # Eval (greedy, then 2 sampled episodes per seed) at step 0 and after the last update; 2 training steps.
    assert [(n, t) for _, n, t, *_ in calls] == [(1, 0.0), (2, 1.0), (2, 1.0), (2, 1.0), (1, 0.0), (2, 1.0)]
    evals, seen = [calls[i][3] for i in (0, 1, 4, 5)], [c[3:] for c in calls[2:4]]
    trained_seeds = {s for seeds, *_ in calls[2:4] for s in seeds}
    assert all(list(calls[i][0]) == [1, 3] for i in (0, 1, 4, 5)) and not trained_seeds & {1, 3}
    assert [m["step"] for m in metrics] == [0, 1, 2]
    for m in metrics[:2]:
        assert not [k for k in EXPECTED_KEYS if k not in m], "missing metric keys"
        assert 1.0 <= m["env/turns"] <= 2.0
        assert m["sync/checksum_ok"] == 1.0 and m["sync/logprob_abs_diff_mean"] < 0.05
    for m, (greedy, sampled) in [(metrics[0], evals[:2]), (metrics[2], evals[2:])]:
        assert not [k for k in EVAL_KEYS if k not in m], "missing eval keys"
        assert m["eval/turns"] == sum(greedy.scores["env/turns"]) / 2 and 1.0 <= m["eval/turns"] <= 2.0
        assert m["eval/accuracy"] == sum(greedy.scores["env/success"]) / 2
        assert m["eval/reward_mean"] == pytest.approx(sum(greedy.rewards) / 2)
        assert len(sampled.tokens) == 4
        assert m["eval/pass@1"] == pytest.approx(sum(sampled.scores["env/success"]) / 4)
    with open(os.path.join(run_dir, "eval", "step_000002.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    assert [row["prompt"] for row in logged] == ["twenty_four, seed 1", "twenty_four, seed 3"]
    assert all(row["completion"].startswith("[env] Numbers: ") and "[model] <answer>" in row["completion"]
               for row in logged)

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    for rollouts, scored in seen:
        assert len(rollouts.tokens) == 4 and len(rollouts.scores["env/turns"]) == 4
        first_masked = [m.index(1) for m in rollouts.loss_mask]
        for g in (0, 2):  # a GRPO group: episodes of one env seed start from the same prompt
            assert rollouts.tokens[g][: first_masked[g]] == rollouts.tokens[g + 1][: first_masked[g + 1]]
        samples = zip(rollouts.tokens, rollouts.loss_mask, rollouts.logprobs, scored)
        for tokens, mask, logprobs, engine_logp in samples:
            assert len(tokens) == len(mask) == len(logprobs) <= cfg.env.max_context_tokens
            assert all((lp != 0.0) == (m == 1) for m, lp in zip(mask, logprobs)), "log-probs off the actions"
            # No observation token in the loss: every masked-out run after the prompt is an env turn.
            for value, a, b in segments(mask)[2:]:
                if value == 0:
                    assert OBSERVATION.fullmatch(tokenizer.decode(tokens[a:b])), tokenizer.decode(tokens[a:b])
            # The sampled log-probs line up with the action tokens: the engine scores them the same.
            at = torch.tensor(mask[1:]) == 1  # score() starts at token 1
            sampled = torch.tensor(logprobs[1:])[at]
            assert (sampled - torch.tensor(engine_logp)[at]).abs().mean() < 0.05
    trained.shutdown()


def recorded(monkeypatch) -> list:
    """Every rollout the run collects, as (rollouts, the engine's log-probs of their tokens)."""
    calls = []
    real = EpisodeRollout.collect

    def recording(self, env_seeds, seed, n, temperature, top_p=None):
        rollouts = real(self, env_seeds, seed, n, temperature, top_p)
        calls.append((rollouts, engine_logprobs(self.engines.engines[0], rollouts.tokens)))
        return rollouts

    monkeypatch.setattr(EpisodeRollout, "collect", recording)
    return calls


def run_two_steps(config: str, overrides: list[str], tmp_path) -> tuple:
    cfg = load_config(os.path.join(ROOT, "configs", config), TINY_RUN + overrides + [
        "eval.every=0", f"logging.output_dir={tmp_path}", "logging.run_name=run"])
    run_dir = os.path.join(str(tmp_path), "run")
    os.makedirs(run_dir)
    trained = train(cfg, run_dir)
    trained.shutdown()
    return read_metrics(run_dir)


def assert_sampled_where_trained(rollouts, engine_logp) -> None:
    """Log-probs sit on the model's tokens only, and the engine scores those tokens as it sampled them."""
    for mask, logprobs, scored in zip(rollouts.loss_mask, rollouts.logprobs, engine_logp):
        assert all((lp != 0.0) == (m == 1) for m, lp in zip(mask, logprobs)), "log-probs off the actions"
        at = torch.tensor(mask[1:]) == 1
        assert (torch.tensor(logprobs[1:])[at] - torch.tensor(scored)[at]).abs().mean() < 0.05


@pytest.mark.e2e
def test_a_users_gym_style_env_trains_by_its_class_path(ray_job, tiny_model, tmp_path, monkeypatch):
    """tests.user_plugins:ParrotGym subclasses nothing of ours: reset and step, constructor params."""
    from transformers import AutoTokenizer

    calls = recorded(monkeypatch)
    metrics = run_two_steps("grpo_24point_cpu.yaml", ["env.cls=tests.user_plugins:ParrotGym"], tmp_path)
    assert [m["step"] for m in metrics] == [0, 1] and len(calls) == 2
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    for m, (rollouts, engine_logp) in zip(metrics, calls):
        assert 1.0 <= m["env/turns"] <= 2.0 and m["sync/checksum_ok"] == 1.0
        assert 0.0 < m["reward/mean"] <= 2.0  # a random model's misses earn for length: GRPO has spread
        assert all(text.startswith("[env] Say ") for text in rollouts.texts)
        for tokens, mask, turns in zip(rollouts.tokens, rollouts.loss_mask, rollouts.scores["env/turns"]):
            prompt = tokenizer.decode(tokens[: mask.index(1)])
            assert "<|im_start|>system\nRepeat the word you are shown.<|im_end|>" in prompt
            env_turns = [tokenizer.decode(tokens[a:b]) for value, a, b in segments(mask)[2:] if value == 0]
            assert len(env_turns) == turns - 1
            assert all(OBSERVATION.fullmatch(t) and "No. Say " in t for t in env_turns)
        assert_sampled_where_trained(rollouts, engine_logp)


# Every reply opens with a complete call (the random tiny model never writes one itself): each turn
# runs the code in the sandbox of an env worker and gets its output back as a tool message.
CALL = "```python\nprint(6 * 7)\n```\n"
TOOL_TURN = re.compile(r"(<\|im_end\|>)?\n<\|im_start\|>tool\n42\n<\|im_end\|>\n<\|im_start\|>assistant\n"
                       + re.escape(CALL))


@pytest.mark.e2e
def test_a_tool_using_env_runs_two_multi_turn_grpo_steps(ray_job, tiny_model, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    calls = recorded(monkeypatch)
    prefix = f"data.response_prefix={json.dumps(CALL)}"
    metrics = run_two_steps("grpo_tool_arithmetic_cpu.yaml", [prefix], tmp_path)
    assert [m["step"] for m in metrics] == [0, 1] and len(calls) == 2
    for m in metrics:  # two replies per episode, each a call of the python tool that ran
        assert (m["env/turns"], m["env/tool_calls"], m["env/tool_errors"]) == (2.0, 2.0, 0.0)
        assert m["sync/checksum_ok"] == 1.0 and "train/loss" in m
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    for rollouts, engine_logp in calls:
        assert rollouts.scores["env/tool_calls"] == [2.0] * len(rollouts.tokens)
        for tokens, mask, text in zip(rollouts.tokens, rollouts.loss_mask, rollouts.texts):
            prompt = tokenizer.decode(tokens[: mask.index(1)])
            assert "To call python, write its code in a fenced block" in prompt and prompt.endswith(CALL)
            [tool_turn] = [tokenizer.decode(tokens[a:b]) for value, a, b in segments(mask)[2:] if value == 0]
            assert TOOL_TURN.fullmatch(tool_turn), tool_turn  # outside the loss, token in, token out
            assert text.count("[tool] 42") == 2
        assert_sampled_where_trained(rollouts, engine_logp)
