"""A user's agent for the end-to-end tests, written with the `openai` client against the endpoint, and
what it saw of each call (agents run in the driver: the test reads `SEEN` afterwards)."""

from __future__ import annotations

import threading
import time

# episode id -> {"calls": [(prompt ids, generated ids, log-probs)], "trimmed": bool, "failed": bool}
SEEN: dict[str, dict] = {}
_count = iter(range(10**9))
_lock = threading.Lock()


TOOL = {"type": "function", "function": {"name": "add", "description": "Add two numbers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}


def episode_of(client) -> str:
    return str(client.base_url).split("/episodes/")[1].split("/")[0]


def recording_agent(client, task: dict, fail_every: int = 8, trim_every: int = 2):
    """Three calls: a chat completion offering a tool; a streamed one after the history (or, on every
    `trim_every`-th episode, after only a new user message: the agent trimmed its history, a split); a
    plain completion on the token ids of the conversation so far. Every `fail_every`-th episode raises
    after its calls.
    The reward is the length of the last text (a random model varies in it), or None for rows whose
    answer is even: the configured reward functions score those."""
    with _lock:
        k = next(_count)
    seen = SEEN[episode_of(client)] = {"calls": [], "trimmed": k % trim_every == 1,
                                       "failed": k % fail_every == fail_every - 1}
    messages = list(task["messages"])
    first = client.chat.completions.create(model="any-name", messages=messages, logprobs=True,
                                           tools=[TOOL], extra_body={"return_token_ids": True}).model_dump()
    choice = first["choices"][0]
    seen["calls"].append((first["prompt_token_ids"], choice["token_ids"],
                          [t["logprob"] for t in choice["logprobs"]["content"]]))
    messages += [{"role": "assistant", "content": choice["message"]["content"]}]
    retry = [{"role": "user", "content": "Once more."}]
    history = retry if seen["trimmed"] else messages + retry
    stream = client.chat.completions.create(model="m", messages=history, stream=True, logprobs=True,
                                            extra_body={"return_token_ids": True})
    chunks = [chunk.model_dump() for chunk in stream]
    prompt = chunks[0]["prompt_token_ids"]
    deltas = [c for chunk in chunks for c in chunk["choices"] if c.get("token_ids")]
    generated = [t for c in deltas for t in c["token_ids"]]
    logprobs = [t["logprob"] for c in deltas for t in c["logprobs"]["content"]]
    seen["calls"].append((prompt, generated, logprobs))
    third = client.completions.create(model="m", prompt=prompt + generated, max_tokens=4, logprobs=0,
                                      extra_body={"return_token_ids": True}).model_dump()["choices"][0]
    seen["calls"].append((prompt + generated, third["token_ids"], third["logprobs"]["token_logprobs"]))
    if seen["failed"]:
        raise RuntimeError("a bug in the agent")
    return None if int(task["answer"]) % 2 == 0 else len(third["text"]) / 40


def patient_agent(client, task: dict, pause_s: float = 3.0):
    """Two chat calls with a pause between them (a slow tool, say): with asynchronous GRPO a weight load
    lands in the pause, so an episode spans two policy versions."""
    messages = list(task["messages"])
    for turn in range(2):
        text = client.chat.completions.create(model="m", messages=messages).choices[0].message.content
        messages += [{"role": "assistant", "content": text}, {"role": "user", "content": "Go on."}]
        if turn == 0:
            time.sleep(pause_s)
    return len(text) / 40


def chatting_agent(client, task: dict, turns: int = 4, rewrite: bool = False):
    """Written from docs/training-an-agent.md alone: `turns` chat calls, each appending the model's reply
    and a user message. With `rewrite`, the first reply is rewritten before the last call (a history
    that is not only appended to). Records each call's sampled ids and text in SEEN[episode]["replies"]."""
    seen = SEEN[episode_of(client)] = {"replies": []}
    messages = list(task["messages"])
    for turn in range(turns):
        if rewrite and turn == turns - 1:
            messages[len(task["messages"])] = {"role": "assistant", "content": "Something else."}
        choice = client.chat.completions.create(model="m", messages=messages,
                                                extra_body={"return_token_ids": True}).choices[0]
        seen["replies"].append((choice.token_ids, choice.message.content, choice.finish_reason))
        messages += [{"role": "assistant", "content": choice.message.content},
                     {"role": "user", "content": "Go on."}]
    return 1.0


def knocking_agent(client, task: dict):
    """Calls its endpoint without its key (none, then a wrong one): both refused; then with it."""
    import httpx
    import openai
    import pytest

    bare = httpx.post(f"{client.base_url}chat/completions", json={"model": "m", "messages": task["messages"]})
    if bare.status_code != 401:
        raise AssertionError(f"a call without a key was answered {bare.status_code}")
    with pytest.raises(openai.AuthenticationError):
        client.with_options(api_key="not-the-key").chat.completions.create(model="m",
                                                                          messages=task["messages"])
    client.chat.completions.create(model="m", messages=task["messages"])
    return 1.0
