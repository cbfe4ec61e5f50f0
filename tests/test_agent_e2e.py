"""An agent written with the `openai` client, trained through the real stack: the vLLM engine's
OpenAI-compatible endpoint (actors/openai_server.py), the agent rollout, DeepSpeed policy, gloo weight
sync; 2 GRPO steps with the tiny random model (tests/agent_plugins.py: recording_agent)."""

import os

import pytest
import torch

from actors.openai_server import EndpointPool
from launcher.grpo import train
from system.config.grpo import load_config
from system.reporting.metrics import read_metrics
from system.rollout.agent import AgentRollout
from tests import agent_plugins
from tests.probes import engine_logprobs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = [
    "model.path=tiny", "steps=2", "prompts_per_step=2", "rollout.group_size=4", "rollout.max_new_tokens=8",
    "rollout.max_model_len=512", "rollout.temperature=1.0", "agent.fn=tests.agent_plugins:recording_agent",
    "agent.params={}", "agent.concurrency=4", "agent.tool_parser=hermes",
    "reward.functions={tests.user_plugins:response_length: 1.0}",
    "train.lr=1e-3", "logging.wandb_mode=disabled", "logging.progress_bar=false", "sync.bucket_mb=4",
    "sync.verify_every=1", "checkpoint.save_final=false", "eval.every=0",
]


def contains_call(tokens: list[int], mask: list[int], prompt: list[int], generated: list[int]) -> bool:
    """The sample starts with the call's prompt and goes on with its generated tokens, in the loss."""
    end = len(prompt) + len(generated)
    starts = tokens[: len(prompt)] == prompt and tokens[len(prompt): end] == generated
    return starts and all(mask[len(prompt): end])


def run(overrides: list[str], tmp_path) -> list[dict]:
    """A GRPO run of the agent recipe with the tiny model; its metrics."""
    cfg = load_config(os.path.join(ROOT, "configs", "grpo_openai_agent_cpu.yaml"),
                      overrides + [f"logging.output_dir={tmp_path}", "logging.run_name=run"])
    run_dir = os.path.join(str(tmp_path), "run")
    os.makedirs(run_dir)
    train(cfg, run_dir).shutdown()
    return read_metrics(run_dir)


@pytest.mark.e2e
def test_an_openai_client_agent_trains_through_the_endpoint(ray_job, tiny_model, tmp_path, monkeypatch):
    collected, closed = [], []
    real_collect, real_close = AgentRollout.collect, EndpointPool.close

    def collect(self, rows, seed, n, temperature, top_p=None):
        rollouts = real_collect(self, rows, seed, n, temperature, top_p)
        collected.append((rollouts, engine_logprobs(self.endpoints.engines.engines[0], rollouts.tokens)))
        return rollouts

    def close(self, ids):
        calls = real_close(self, ids)
        closed.append(calls)
        return calls

    monkeypatch.setattr(AgentRollout, "collect", collect)
    monkeypatch.setattr(EndpointPool, "close", close)
    metrics = run(RUN, tmp_path)

    assert [m["step"] for m in metrics] == [0, 1] and len(collected) == len(closed) == 2
    for step, (m, (rollouts, scored), calls) in enumerate(zip(metrics, collected, closed)):
        assert len(calls) == 8 and m["agent/calls"] == 3.0 and m["agent/failed"] == 1 / 8
        assert m["sync/checksum_ok"] == 1.0 and m["sync/logprob_abs_diff_mean"] < 0.05 and "train/loss" in m
        splits, generated = 0, []
        for eid, recorded in calls.items():
            seen = agent_plugins.SEEN[eid]
            # What the agent got back (token ids, log-probs) is what the endpoint recorded, call by call.
            assert [(c.prompt, c.tokens) for c in recorded] == [(p, g) for p, g, _ in seen["calls"]]
            for c, (_, _, logprobs) in zip(recorded, seen["calls"]):
                assert c.logprobs == pytest.approx(logprobs, abs=1e-5) and set(c.versions) == {step}
            if not seen["failed"]:  # a failed episode leaves no sample
                (p1, g1, _), (p2, _, _), _ = seen["calls"]
                split = p2[: len(p1) + len(g1)] != p1 + g1  # trimmed, or a reply that re-tokenised otherwise
                assert seen["trimmed"] <= split
                splits, generated = splits + split, generated + recorded
        assert splits >= 3 and m["agent/split_episodes"] == pytest.approx(splits / 8)
        # The samples: every call of an episode that did not fail in one, its generated tokens in the
        # loss there, and no other token in the loss.
        real = [k for k, mask in enumerate(rollouts.loss_mask) if any(mask)]
        assert sum(sum(rollouts.loss_mask[k]) for k in real) == sum(len(c.tokens) for c in generated)
        for c in generated:
            assert any(contains_call(rollouts.tokens[k], rollouts.loss_mask[k], c.prompt, c.tokens)
                       for k in real)
        for k in real:  # the engine scores the sample's tokens as it sampled them
            mask, logprobs = rollouts.loss_mask[k], rollouts.logprobs[k]
            assert all((lp != 0.0) == (x == 1) for x, lp in zip(mask, logprobs))
            assert all(v == step for v, x in zip(rollouts.versions[k], mask) if x)
            at = torch.tensor(mask[1:]) == 1
            assert (torch.tensor(logprobs[1:])[at] - torch.tensor(scored[k])[at]).abs().mean() < 0.05
        # Whole groups of 4; the failed episode's place is unscorable; rows with an even answer were
        # left to the reward function.
        assert len(rollouts.tokens) % 4 == 0 and sum(r is None for r in rollouts.rewards) >= 1
        assert m["reward/unscorable_frac"] > 0 and "reward/tests.user_plugins:response_length/mean" in m



@pytest.mark.e2e
def test_agent_episodes_span_weight_versions_with_async_grpo(ray_job, tiny_model, tmp_path, monkeypatch):
    """schedule.max_staleness=1: the next batch's episodes run while the trainer updates, and the update's
    weights land in the middle of them (between decode steps): their tokens carry both versions."""
    closed = []
    real_close = EndpointPool.close

    def close(self, ids):
        closed.append(real_close(self, ids))
        return closed[-1]

    monkeypatch.setattr(EndpointPool, "close", close)
    metrics = run([o for o in RUN if not o.startswith(("steps=", "agent."))] + [
        "steps=3", "schedule.max_staleness=1", "agent.fn=tests.agent_plugins:patient_agent",
        "agent.params={}"],
        tmp_path)

    assert [m["step"] for m in metrics] == [0, 1, 2] and len(closed) == 3
    assert all(m["async/staleness_max"] <= 1 and m["agent/calls"] == 2.0 and "train/loss" in m
               for m in metrics)
    mixed = 0
    for step, calls in enumerate(closed):
        for recorded in calls.values():
            versions = {v for c in recorded for v in c.versions}
            assert versions <= {step - 1, step}, versions  # at most one update stale
            mixed += len(versions) == 2
    assert mixed > 0
