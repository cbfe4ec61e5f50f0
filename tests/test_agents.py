"""Agent programs without Ray or vLLM: recorded calls -> samples (the split rule), the GRPO layout
of split episodes, running agent functions (failures, time limits, async agents), the config."""

import time

import openai  # noqa: F401  (imported once here: an agent's time limit should not pay for it)
import pytest
import torch

from system.agents.episodes import Call, EpisodeCalls, assemble, group_aligned
from system.agents.runner import AgentError, Endpoint, check_failures, run_agents
from system.algorithms.advantages import grpo
from system.config.grpo import ConfigError, load_config
from system.rewards import RewardScorer


def call(index: int, prompt: list[int], tokens: list[int], version: int = 0) -> Call:
    return Call(index, prompt, tokens, [-0.5] * len(tokens), [version] * len(tokens), "stop", f"t{index}")


def test_calls_that_extend_the_history_make_one_sample():
    calls = [call(0, [1, 2], [3, 4]), call(1, [1, 2, 3, 4, 5, 6], [7], version=1),
             call(2, [1, 2, 3, 4, 5, 6, 7], [8])]
    [sample] = assemble(calls)
    assert sample.tokens == [1, 2, 3, 4, 5, 6, 7, 8]
    assert sample.loss_mask == [0, 0, 1, 1, 0, 0, 1, 1]  # the prompt and the agent's tokens (5, 6) outside
    assert sample.logprobs == [0.0, 0.0, -0.5, -0.5, 0.0, 0.0, -0.5, -0.5]
    assert sample.versions == [-1, -1, 0, 0, -1, -1, 1, 0]
    assert sample.texts == ["t0", "t1", "t2"]


def test_a_call_that_does_not_extend_the_tokens_starts_a_new_sample():
    # Call 1 re-tokenised the model's reply (3, 4 -> 9): no sample continues, a new one starts.
    # Call 2 extends call 0's sample again (a rewind to it is allowed), the longest match wins.
    calls = [call(0, [1, 2], [3, 4]), call(1, [1, 2, 9, 5], [6]), call(2, [1, 2, 3, 4, 5], [7])]
    first, second = assemble(calls)
    assert (first.tokens, first.loss_mask) == ([1, 2, 3, 4, 5, 7], [0, 0, 1, 1, 0, 1])
    assert (second.tokens, second.loss_mask) == ([1, 2, 9, 5, 6], [0, 0, 0, 0, 1])
    generated = sum(len(c.tokens) for c in calls)
    assert sum(sum(s.loss_mask) for s in (first, second)) == generated  # every generated token trained once


def test_calls_are_taken_in_arrival_order_and_choices_of_one_request_branch():
    calls = [call(1, [1, 2, 3, 5], [6]), call(0, [1, 2], [3]), call(0, [1, 2], [4])]  # request 0: 2 choices
    samples = assemble(calls)
    assert [s.tokens for s in samples] == [[1, 2, 3, 5, 6], [1, 2, 4]]


def test_split_episodes_take_their_group_advantage_in_every_copy():
    one = assemble([call(0, [1], [2])])
    split = assemble([call(0, [1], [2]), call(1, [7], [8])])
    episodes = [one, split, [], one]  # two groups of 2; the third episode failed (no samples)
    order = group_aligned(episodes, 2)
    assert [(i, s is not None) for i, s in order] == [(0, True), (1, True), (0, False), (1, True),
                                                      (2, False), (3, True)]
    rewards = torch.tensor([[0.0, 1.0][i % 2] for i, _ in order])  # each sample carries its episode's reward
    advantages = grpo(rewards, torch.ones(len(order), dtype=torch.bool), 2)
    assert advantages[1] == advantages[3] > 0 > advantages[0] == advantages[2]
    padded = group_aligned(episodes, 2, multiple=4)
    assert len(padded) == 8 and all(s is None for _, s in padded[6:]) and [i for i, _ in padded[6:]] == [2, 3]


def returns(value):
    def agent(client, task, **params):
        return value(task) if callable(value) else value
    return agent


def test_agent_outcomes_rewards_errors_and_the_time_limit():
    def slow(client, task):
        time.sleep(5)

    def broken(client, task):
        raise KeyError("answer")

    def mutating(client, task, bonus):
        task["messages"].append("x")  # a copy: the data set's row is left alone
        return 0.5 + bonus

    row = {"messages": ["q"]}
    cases = [returns(1), returns(None), returns("1"), returns(True), returns(float("nan")), broken, slow]
    start, nowhere = time.monotonic(), [Endpoint("http://127.0.0.1:9/v1", "k")]
    outcomes = [run_agents(fn, nowhere, [row], {}, 1, 0.5, 1.0)[0] for fn in cases]
    assert time.monotonic() - start < 3
    assert [(o.reward, bool(o.error)) for o in outcomes[:2]] == [(1.0, False), (None, False)]
    assert "returned '1'" in outcomes[2].error and "returned True" in outcomes[3].error
    assert "returned nan" in outcomes[4].error
    assert outcomes[5].error == "raised KeyError: 'answer'" and outcomes[6].error.startswith("timed out")
    [out] = run_agents(mutating, nowhere, [row], {"bonus": 0.25}, 1, 1.0, 1.0)
    assert out.reward == 0.75 and row == {"messages": ["q"]}


def test_agents_run_concurrently_within_the_bound_and_async_agents_get_an_async_client():
    def waits(client, task):
        time.sleep(0.3)
        return (type(client).__name__ == "OpenAI" and str(client.base_url).endswith("/e1/v1/")
                and client.api_key == "key-e1" and 1.0)

    async def coroutine(client, task):
        return float(type(client).__name__ == "AsyncOpenAI")

    start = time.monotonic()
    endpoints = [Endpoint("http://h:1/episodes/e1/v1", "key-e1")] * 6
    outcomes = run_agents(waits, endpoints, [{}] * 6, {}, 3, 5.0, 1.0)
    assert [o.reward for o in outcomes] == [1.0] * 6
    assert 0.55 < time.monotonic() - start < 1.5  # 2 rounds of 3
    assert run_agents(coroutine, [Endpoint("http://h:1/v1", "k")], [{}], {}, 1, 5.0, 1.0)[0].reward == 1.0


def test_too_many_failed_episodes_stop_the_run():
    rows = [{"r": 1}, {"r": "x"}, {"r": "y"}, {"r": 0}]
    outcomes = run_agents(returns(lambda task: task["r"]), [Endpoint("u", "k")] * 4, rows, {}, 2, 5.0, 1.0)
    check_failures(outcomes, 0.5)
    with pytest.raises(AgentError, match="2 of 4 agent episodes failed .* the first: returned 'x'"):
        check_failures(outcomes, 0.25)


def test_agent_config_is_checked():
    base = ["agent.fn=system.agents.examples.arithmetic:run"]
    cfg = load_config("configs/grpo_openai_agent_cpu.yaml", [])
    assert cfg.agent.fn and cfg.agent.concurrency >= 1
    with pytest.raises(ConfigError, match="unknown config key 'agent.concurency'.*'agent.concurrency'"):
        load_config("configs/grpo_arithmetic_cpu.yaml", base + ["agent.concurency=2"])
    with pytest.raises(ConfigError, match="'agent.fn': .*has no attribute 'nope'"):
        load_config("configs/grpo_arithmetic_cpu.yaml", ["agent.fn=system.agents.examples.arithmetic:nope"])
    with pytest.raises(ConfigError, match="not both"):
        load_config("configs/grpo_24point_cpu.yaml", base)
    with pytest.raises(ConfigError, match="max_failed_frac"):
        load_config("configs/grpo_arithmetic_cpu.yaml", base + ["agent.max_failed_frac=2"])


class FakeEndpoints:
    """Stands for actors/openai_server.py's pool: row "a"'s episodes split in two samples, the others
    make one call."""

    def open(self, sampling: dict) -> dict:
        self.sampling = sampling
        return {eid: Endpoint(f"http://127.0.0.1:9/episodes/{eid}/v1", "k") for eid in sampling}

    def close(self, ids: list[str]) -> dict:
        calls = [[call(0, [1], [2]), call(1, [5], [6, 7])], [call(0, [1], [2])], [call(0, [1], [3])]]
        return {eid: EpisodeCalls(calls[k // 2], refused=k % 2) for k, eid in enumerate(ids)}


def quarter(completions, **_):
    return [0.25] * len(completions)


def by_row(client, task):
    if task["q"] == "c":
        raise ValueError("no")
    return 0.5 if task["q"] == "a" else None


def test_agent_rollout_lays_out_rewards_scores_and_failures(monkeypatch):
    from transformers import AutoTokenizer

    from system.models import tiny_model_path
    from system.rollout.agent import AgentRollout

    cfg = load_config("configs/grpo_openai_agent_cpu.yaml",
                      ["agent.fn=tests.test_agents:by_row", "agent.params={}",
                       "reward.functions={tests.test_agents:quarter: 2.0}", "reward.num_workers=0"])
    rows = [{"q": q, "messages": [{"role": "user", "content": q}]} for q in "abc"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path())
    rollout = AgentRollout(FakeEndpoints(), RewardScorer(cfg.reward), tokenizer, cfg, None, rows)
    out = rollout.collect(rows, 7, 2, 0.5)
    assert [s["temperature"] for s in rollout.endpoints.sampling.values()] == [0.5] * 6
    assert [s["seed"] for s in rollout.endpoints.sampling.values()] == [7, 8, 9, 10, 11, 12]
    assert len(out.tokens) == 8  # row a: 2 copies of its group (both episodes split), b: 1, c: 1 (fillers)
    assert out.rewards == [0.5] * 4 + [0.5, 0.5] + [None, None]  # row b's: the reward functions', weighted
    assert out.tokens[:4] == [[1, 2], [1, 2], [5, 6, 7], [5, 6, 7]] and out.loss_mask[2] == [0, 1, 1]
    assert out.loss_mask[6:] == [[0, 0], [0, 0]] and out.texts[6:] == ["", ""]
    assert out.scores["agent/split_episodes"] == [1.0, 1.0, None, None, 0.0, 0.0, 0.0, 0.0]
    assert out.scores["agent/failed"] == [0.0, 0.0, None, None, 0.0, 0.0, 1.0, 1.0]  # on first samples only
    assert out.scores["agent/refused_calls"] == [0.0, 1.0, None, None, 0.0, 1.0, 0.0, 1.0]
    assert out.scores["tests.test_agents:quarter"] == [None] * 4 + [0.25, 0.25, None, None]  # agent gave None
    assert out.scores["agent/calls"][:2] == [2.0, 2.0] and "timing/generate_s" in out.timings
