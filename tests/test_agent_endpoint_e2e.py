"""The engines' OpenAI endpoint with the real `openai` client, a vLLM engine actor on the tiny model and
the agent rollout (no trainer): each episode's key (right key served, none or another episode's
refused with 401 and counted in `agent/refused_calls`), and token in, token out (an agent that only
appends stays one sample of exactly the sampled ids; one that rewrites its history still splits)."""

from types import SimpleNamespace

import httpx
import openai
import pytest
import ray

from actors.openai_server import EndpointPool
from system.config.grpo import RolloutConfig, load_config
from system.rollout.agent import AgentRollout
from tests import agent_plugins

MAX_NEW_TOKENS = 6  # every reply of the random tiny model is cut here, mostly mid-word
ROWS = [{"messages": [{"role": "user", "content": q}], "answer": "1"} for q in ("Hi.", "Count to ten.")]


@pytest.fixture(scope="module")
def engines(ray_cluster, tiny_model):
    from actors.vllm_engine import VLLMEngine

    engine = VLLMEngine.options(num_cpus=0.5).remote(tiny_model, RolloutConfig(max_model_len=512), 0,
                                                     "bfloat16", 1)
    ray.get(engine.__ray_ready__.remote(), timeout=300)
    yield SimpleNamespace(engines=[engine], names=["engine-0"])
    ray.kill(engine)


def endpoint_pool(engines) -> EndpointPool:
    return EndpointPool(engines, {"model_name": "policy", "tool_parser": ""}, timeout_s=120)


def rollout(engines, agent: str):
    from transformers import AutoTokenizer

    from system.models import tiny_model_path

    cfg = load_config("configs/grpo_openai_agent_cpu.yaml", [
        f"agent.fn=tests.agent_plugins:{agent}", "agent.params={}", "agent.concurrency=4",
        f"rollout.max_new_tokens={MAX_NEW_TOKENS}", "rollout.max_model_len=512"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path())
    return AgentRollout(endpoint_pool(engines), None, tokenizer, cfg, None, ROWS), tokenizer


def chat(url: str, api_key: str):
    with openai.OpenAI(base_url=url, api_key=api_key, max_retries=0, timeout=60) as client:
        return client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi."}])


@pytest.mark.e2e
def test_a_call_needs_its_episode_key_and_refusals_are_counted(engines):
    pool = endpoint_pool(engines)
    sampling = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 4, "seed": 3}
    mine, other = pool.open({"mine": sampling, "other": sampling}).values()
    assert mine.api_key != other.api_key and len(mine.api_key) >= 32
    assert chat(mine.url, mine.api_key).choices[0].message.content is not None
    for key in (other.api_key, mine.api_key[:-1], "r1ray"):  # another episode's, a near miss, a guess
        with pytest.raises(openai.AuthenticationError):
            chat(mine.url, key)
    # No key at all (the openai client always sends one)
    assert httpx.post(f"{mine.url}/chat/completions", json={"model": "m", "messages": []}).status_code == 401
    assert httpx.get(f"{mine.url}/models").status_code == 401  # every route of the episode
    calls = pool.close(["mine", "other"])
    assert (len(calls["mine"]), calls["mine"].refused) == (1, 5) and calls["other"].refused == 0
    with pytest.raises(openai.NotFoundError):  # closed: the key no longer opens it
        chat(mine.url, mine.api_key)

    # In a rollout: an agent that knocks without its key, then calls with it; counted per episode.
    agent_rollout, _ = rollout(engines, "knocking_agent")
    out = agent_rollout.collect(ROWS, 11, 2, 1.0)
    assert out.scores["agent/refused_calls"] == [2.0] * 4 and out.scores["agent/failed"] == [0.0] * 4


@pytest.mark.e2e
def test_an_append_only_agent_trains_on_exactly_the_sampled_tokens(engines):
    agent_plugins.SEEN.clear()
    agent_rollout, tokenizer = rollout(engines, "chatting_agent")
    out = agent_rollout.collect(ROWS, 5, 2, 1.0)

    assert out.scores["agent/split_episodes"] == [0.0] * 4 and out.scores["agent/calls"] == [4.0] * 4
    replies = [r for seen in agent_plugins.SEEN.values() for r in seen["replies"]]
    assert len(replies) == 16 and all(reason == "length" for *_, reason in replies)
    # The text, tokenised again, is not what was sampled: the old rule split such episodes.
    assert any(tokenizer.encode(text, add_special_tokens=False) != ids for ids, text, _ in replies)
    trained = sorted([t for t, m in zip(tokens, mask) if m]
                     for tokens, mask in zip(out.tokens, out.loss_mask))
    sampled = sorted([t for ids, *_ in seen["replies"] for t in ids] for seen in agent_plugins.SEEN.values())
    assert trained == sampled

    agent_plugins.SEEN.clear()
    agent_rollout.cfg.agent.params = {"rewrite": True}
    out = agent_rollout.collect(ROWS, 5, 2, 1.0)
    assert [s for s in out.scores["agent/split_episodes"] if s is not None] == [1.0] * 4
