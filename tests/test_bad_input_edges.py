"""Bad input at the edges of a run (docs/reliability.md, "Bad input at the edges"): a reward that returns
what is no score, a data file with malformed rows, a call to the agents' endpoint that asks too much, and a
config that asks for more devices than the cluster has."""

import asyncio
import json
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from actors.placement import PlacementError, check_fits
from system.config.grpo import ConfigError, DataConfig, RewardConfig, load_config
from system.data import DataError, load_splits
from system.rewards import RewardError, RewardScorer
from system.rewards.scorer import run_reward

# A reward that returns what is no score


def returning(value):
    """A reward that scores the second completion `value` and the others 1.0."""
    return lambda completions, **columns: [value if i == 1 else 1.0 for i in range(len(completions))]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "1.0", [1.0], {"score": 1}, object()])
def test_a_score_that_is_no_finite_number_is_an_error_naming_the_reward_the_value_and_the_sample(value):
    columns = {"answer": ["1", "2", "3"]}
    with pytest.raises(RewardError) as error:
        run_reward("odd", returning(value), ["a", "b", "c"], columns, first=6)
    message = str(error.value)
    assert f"reward 'odd' returned {repr(value)[:40]}" in message
    assert "for sample 7 of the batch, columns {answer: '2'}, completion 'b'" in message
    assert "a score is a finite number, or None when the sample cannot be scored" in message


def test_none_and_any_finite_number_are_scores():
    scores = run_reward("fine", lambda completions, **_: [None, np.float32(0.5), 2, True], list("abcd"), {})
    assert scores == [None, 0.5, 2.0, 1.0] and all(type(s) in (float, type(None)) for s in scores)


@pytest.mark.parametrize("returned, said", [(0.5, "a float (0.5)"), ([1.0], "1 scores ([1.0])"),
                                            ("11", "a str (11)")])
def test_a_reward_that_returns_no_list_of_one_score_per_completion_is_an_error(returned, said):
    with pytest.raises(RewardError, match=f"reward 'odd' returned {re.escape(said)} for 2 completions "
                                          r"\(samples 0-1\): a reward returns a list of one score per completion"):
        run_reward("odd", lambda completions, **_: returned, ["a", "b"], {})


def test_the_driver_scorer_never_lets_a_nan_reach_the_combined_reward():
    scorer = RewardScorer(RewardConfig(functions={"tests.test_bad_input_edges:nan_reward": 1.0}, num_workers=0))
    with pytest.raises(RewardError, match="reward 'tests.test_bad_input_edges:nan_reward' returned nan"):
        scorer.score(["a", "b"], {"answer": ["1", "2"]})


def nan_reward(completions, **columns):
    return [math.nan] * len(completions)


# A data file with malformed rows

GOOD = {"question": "1+1", "answer": "2"}


def jsonl_with_bad_lines(tmp_path):
    """A JSON-lines file with 9 good rows and, at the lines an editor shows, bad JSON (4), a row that is no
    object (9) and one without a prompt (12); line 6 is blank and line 2's text holds a line separator."""
    lines = [json.dumps(GOOD)] * 13
    lines[1] = json.dumps({"question": "one\u2028two", "answer": "2"}, ensure_ascii=False)
    lines[3], lines[5], lines[8], lines[11] = '{"question": "1+', "", "[1, 2]", json.dumps({"answer": "3"})
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_malformed_row_stops_the_load_naming_the_file_and_the_line_by_default(tmp_path):
    path = jsonl_with_bad_lines(tmp_path)
    with pytest.raises(DataError, match=f"{path}, line 4: not valid JSON"):
        load_splits(DataConfig(source=str(path), num_eval=1))
    path.write_text(path.read_text().replace('{"question": "1+\n', ""))  # fixed: the next one is named
    with pytest.raises(DataError, match=f"{path}, line 8: expected a JSON object, got list"):
        load_splits(DataConfig(source=str(path), num_eval=1))


def test_skip_leaves_out_only_the_malformed_rows_and_prints_their_lines(tmp_path, capsys):
    path = jsonl_with_bad_lines(tmp_path)
    train, held_out = load_splits(DataConfig(source=str(path), num_eval=1, bad_rows="skip"))
    assert len(held_out) + len(train) == 9 and held_out[0]["question"] == "1+1"
    assert train[0]["question"] == "one\u2028two"  # its line separator is no line break
    out = capsys.readouterr().out
    assert f"data: skipped 3 malformed rows of {path} (data.bad_rows=skip), 9 kept: line 4, line 9, line 12; " \
           f"the first: {path}, line 4: not valid JSON" in out


def test_skip_over_a_file_of_only_malformed_rows_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"not json\n\xff\xfe\n")
    with pytest.raises(DataError, match=f"every row of {path} is malformed \\(data.bad_rows=skip\\); the first: "
                                        f"{path}, line 1: not valid JSON"):
        load_splits(DataConfig(source=str(path), num_eval=0, bad_rows="skip"))

def test_a_line_that_is_no_utf8_text_is_a_malformed_row(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataError, match=f"{path}, line 2: not UTF-8 text"):
        load_splits(DataConfig(source=str(path), num_eval=0))


@pytest.mark.parametrize("ext", ["parquet", "json"])
def test_rows_of_other_formats_are_named_by_row_and_skipped_alike(tmp_path, capsys, ext):
    import datasets

    rows = [GOOD, {"question": None, "answer": "2"}, GOOD, GOOD]
    path = tmp_path / f"d.{ext}"
    if ext == "parquet":
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    else:
        path.write_text(json.dumps(rows[:1] + ["no object"] + rows[2:]))
    with pytest.raises(DataError, match=f"{path}, row 2"):
        load_splits(DataConfig(source=str(path), num_eval=1))
    train, held_out = load_splits(DataConfig(source=str(path), num_eval=1, bad_rows="skip"))
    assert (len(train), len(held_out)) == (2, 1)
    assert f"skipped 1 malformed rows of {path} (data.bad_rows=skip), 3 kept: row 2;" in capsys.readouterr().out


def test_bad_rows_is_a_checked_choice():
    assert load_config(None, []).data.bad_rows == "stop"
    with pytest.raises(ConfigError, match="'data.bad_rows' must be one of"):
        load_config(None, ["data.bad_rows=ignore"])


# A config that asks for more than the cluster has

NODE = {"CPU": 4.0, "GPU": 1.0, "memory": 8e9, "node:10.0.0.1": 1.0}


def test_a_plan_the_cluster_cannot_hold_is_an_error_naming_what_was_asked_and_what_there_is():
    engines = [(f"engine-{i}", [{"CPU": 1.0, "GPU": 1.0}]) for i in range(2)]
    check_fits(engines[:1] + [("reward", [{"CPU": 0.25}] * 2)], NODE, [NODE])  # fits
    with pytest.raises(PlacementError, match=re.escape(
            "the run asks for {GPU: 2} and the cluster has {GPU: 1} (engine-0: 1 x {CPU: 1, GPU: 1}, "
            "engine-1: 1 x {CPU: 1, GPU: 1}): lower the actor counts")):
        check_fits(engines, NODE, [NODE])
    with pytest.raises(PlacementError, match=re.escape("asks for {rollout_node: 1} and the cluster has "
                                                       "{rollout_node: 0}")):
        check_fits([("engine-0", [{"CPU": 1.0, "rollout_node": 1.0}])], NODE, [NODE])
    # enough in all, but no node has 5 CPUs for one bundle
    with pytest.raises(PlacementError, match=re.escape("a bundle of policy, {CPU: 5}, fits on no node of the "
                                                       "cluster (its nodes: {CPU: 4, GPU: 1}; {CPU: 4, GPU: 1})")):
        check_fits([("policy", [{"CPU": 5.0}])], {"CPU": 8.0}, [NODE, NODE])


@pytest.mark.e2e
def test_placement_fails_at_once_beyond_the_cluster_and_within_its_bound_when_others_hold_it(ray_job):
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

    from actors.placement import Placement
    from system.config.grpo import PlacementConfig
    from system.config.roles import Roles
    from system.platform import CPU, GPU

    def groups() -> int:
        return sum(info["state"] != "REMOVED" for info in placement_group_table().values())

    before, started = groups(), time.monotonic()
    with pytest.raises(PlacementError, match=re.escape("the run asks for {CPU: 8} and the cluster has {CPU: 4}")):
        Placement(Roles(engine=16), PlacementConfig(), CPU)  # 16 engines x 0.5 CPU on the 4 CPUs of ray_cluster
    with pytest.raises(PlacementError, match=re.escape("asks for {GPU: 1} and the cluster has {GPU: 0}")):
        Placement(Roles(engine=1), PlacementConfig(), GPU)  # a GPU config on a CPU cluster
    assert time.monotonic() - started < 5 and groups() == before  # nothing was asked of Ray

    held = placement_group([{"CPU": ray_job.available_resources()["CPU"]}])  # another job's: every free CPU
    assert held.wait(30)
    with pytest.raises(PlacementError, match=re.escape("the placement group of policy (1 x {CPU: 0.5}) was not "
                                                       "ready within 1 s: the cluster has {CPU: 4}, of which "
                                                       "{CPU: 0} free; other jobs or runs hold the rest (1 "
                                                       "placement groups pending, this one among them)")):
        Placement(Roles(engine=1, policy=1), PlacementConfig(), CPU, ready_timeout_s=1)  # the first group waits
    assert groups() == before + 1  # its own groups removed; the other job's kept
    remove_placement_group(held)

    for colocate in (False, True):  # what fits is placed: every actor in a bundle of its own group
        placement = Placement(Roles(engine=2, policy=1, reward=2), PlacementConfig(colocate=colocate), CPU)
        spots = {role: [(o["scheduling_strategy"].placement_group.id, o["scheduling_strategy"].
                         placement_group_bundle_index) for o in placement.options(role)]
                 for role in ("engine", "policy", "reward")}
        assert len(set(spots["engine"])) == 2 and len(set(spots["reward"])) == 2
        assert (spots["policy"][0] == spots["engine"][0]) == colocate  # colocated: on the first engine's device
        placement.remove()


# An agent that sends a huge call, or thousands of them, to the engines' endpoint

async def asgi_call(app, body: bytes, chunk: int = 1 << 20) -> tuple[int, bytes]:
    """(status, the body the app behind it got) of one POST to `app` on episode 'e', its body sent in chunks."""
    chunks = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent, got = [], []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def inner(scope, receive, send):
        got.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "path_params": {"episode": "e"}}
    await app(inner)(scope, receive, send)
    return sent[0]["status"], b"".join(got)


def test_call_limits_pass_a_body_within_the_bound_and_refuse_a_larger_one_without_keeping_it():
    from actors.openai_server import CallLimits

    limits = lambda inner: CallLimits(inner, max_body=4 << 20)  # noqa: E731
    assert asyncio.run(asgi_call(limits, b"x" * (3 << 20))) == (200, b"x" * (3 << 20))
    assert asyncio.run(asgi_call(limits, b"x" * (100 << 20))) == (413, b"")  # read through, not passed on
    refused = []
    full = lambda inner: CallLimits(inner, max_in_flight=0, refused=refused.append)  # noqa: E731
    assert asyncio.run(asgi_call(full, b"x")) == (429, b"") and refused == ["e"]  # counted in agent/refused_calls


@pytest.fixture(scope="module")
def endpoint(ray_cluster, tiny_model):
    """An engine actor on the tiny model, its endpoint's episodes 'mine' and 'flood' open."""
    import ray

    from actors.openai_server import EndpointPool
    from actors.vllm_engine import VLLMEngine
    from system.config.grpo import RolloutConfig

    engine = VLLMEngine.options(num_cpus=0.5).remote(tiny_model, RolloutConfig(max_model_len=256), 0, "bfloat16", 1)
    ray.get(engine.__ray_ready__.remote(), timeout=300)
    pool = EndpointPool(SimpleNamespace(engines=[engine], names=["engine-0"]),
                        {"model_name": "policy", "tool_parser": ""}, timeout_s=120)
    sampling = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 2, "seed": 3}
    yield pool.open({"mine": sampling, "flood": sampling})
    ray.kill(engine)


CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 2}).encode()


def chat_status(url: str, api_key: str, body: bytes = CHAT) -> tuple[int, dict]:
    import httpx

    reply = httpx.post(f"{url}/chat/completions", content=body, timeout=120,
                       headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    return reply.status_code, reply.json()


async def raw_calls(url: str, api_key: str, count: int) -> list[int]:
    """`count` chat calls, each on a connection of its own, all at once: the status of each (0: none)."""
    from urllib.parse import urlsplit

    where = urlsplit(url)
    request = (f"POST {where.path}/chat/completions HTTP/1.1\r\nHost: {where.netloc}\r\nAuthorization: Bearer "
               f"{api_key}\r\nContent-Type: application/json\r\nContent-Length: {len(CHAT)}\r\n"
               "Connection: close\r\n\r\n").encode() + CHAT

    async def call() -> int:
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        writer.write(request)
        head = await asyncio.wait_for(reader.readline(), 120)
        writer.close()
        return int(head.split()[1]) if head else 0

    return await asyncio.gather(*[call() for _ in range(count)])


@pytest.mark.e2e
def test_the_endpoint_refuses_a_100mb_call_and_a_flood_of_2000_and_keeps_serving(endpoint):
    mine, flood = endpoint["mine"], endpoint["flood"]
    status, reply = chat_status(mine.url, mine.api_key, b'{"model": "m", "messages": "' + b"x" * (100 << 20))
    assert status == 413 and reply["error"]["message"] == f"a call's body is at most {8 << 20} bytes (episode 'mine')"

    with ThreadPoolExecutor(1) as pool:
        flooding = pool.submit(asyncio.run, raw_calls(flood.url, flood.api_key, 2000))
        time.sleep(0.5)  # the flood under way
        status, reply = chat_status(mine.url, mine.api_key)  # another episode's call, meanwhile
        statuses = flooding.result(timeout=300)
    assert status == 200 and reply["choices"][0]["message"]["content"] is not None
    served, refused = statuses.count(200), statuses.count(429)
    assert served + refused == 2000 and 64 <= served < 1000, (served, refused, set(statuses))
    assert chat_status(flood.url, flood.api_key)[0] == 200  # its calls are done: served again
