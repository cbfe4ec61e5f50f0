"""Rejection sampling: which traces are kept, and a killed distillation run that resumes without
redoing or duplicating a problem (the selection logic alone, then through the real engine)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from system.teachers.rejection_sampling import (TraceStore, problem_id, rejection_sample, select_traces,
                                                summarize)
from tests.test_grpo_e2e import ROOT

ROWS = [{"nums": [3, 4], "target": 7, "messages": [{"role": "user", "content": "Make 7"}]},
        {"question": "2 + 2", "answer": "4", "source": "arith",
         "messages": [{"role": "user", "content": "2 + 2?"}]}]


def test_select_keeps_distinct_accepted_traces_per_problem():
    texts = ["a", "bb", "a", "ccc", "x", "y", "z", "w"]
    lengths = [1, 2, 1, 3, 1, 1, 1, 1]
    accepted = [True, True, True, False, False, False, False, False]
    # the duplicate "a" once; problem 2: none
    assert select_traces(texts, lengths, accepted, 4, "all") == [0, 1]
    assert select_traces(texts, lengths, accepted, 4, "shortest") == [0]
    assert select_traces(texts, [5, 2, 5, 3, 1, 1, 1, 1], accepted, 4, "shortest") == [1]


def test_rejection_sample_rows_and_progress():
    texts = ["<answer> 3 + 4 </answer>", "<answer> 3 * 4 </answer>", "<answer> 4 </answer>",
             "<answer> 4 </answer>"]
    traces, progress = rejection_sample(ROWS, texts, [5, 5, 3, 3], correct=[True, False, True, True],
                                        finished=[True, True, False, True], n=2, keep="all",
                                        source="countdown")
    # the cut-off trace is not kept
    assert [t["messages"][-1]["content"] for t in traces] == [texts[0], texts[3]]
    first, second = traces
    assert first["messages"][:-1] == ROWS[0]["messages"] and first["messages"][-1]["role"] == "assistant"
    assert (first["problem"], first["answer"], first["source"], first["nums"]) == (
        "Make 7", "3 + 4", "countdown", [3, 4])
    assert (second["answer"], second["source"]) == ("4", "arith")  # the gold answer and the row's own source
    assert [p["id"] for p in progress] == [problem_id(r) for r in ROWS] == [t["problem_id"] for t in traces]
    assert [(p["samples"], p["correct"], p["kept"]) for p in progress] == [(2, 1, 1), (2, 2, 1)]
    stats = summarize(progress)
    assert (stats["problems"], stats["samples"], stats["kept"], stats["kept_rate"]) == (2, 4, 2, 0.5)
    assert stats["per_source"]["arith"]["kept_rate"] == 0.5
    assert stats["per_source"]["countdown"]["solved"] == 1


def test_an_episode_keeps_its_earlier_turns_before_the_verified_reply():
    earlier = [{"role": "assistant", "content": "<answer> 3 * 4 </answer>", "weight": 0},
               {"role": "user", "content": "3 * 4 evaluates to 12, not 7."}]
    traces, _ = rejection_sample(ROWS[:1], ["<answer> 3 + 4 </answer>"] * 2, [5, 5], [True] * 2, [True] * 2,
                                 2, "all", "countdown", earlier=[earlier, []])
    reply = [{"role": "assistant", "content": "<answer> 3 + 4 </answer>"}]
    assert [t["messages"] for t in traces] == [ROWS[0]["messages"] + earlier + reply,
                                               ROWS[0]["messages"] + reply]
    assert traces[0]["answer"] == "3 + 4"  # the same reply after other turns is another episode: both kept


def test_problem_ids_ignore_the_prompt_and_the_row_position():
    assert problem_id(ROWS[0]) == problem_id({**ROWS[0], "messages": []}) != problem_id(ROWS[1])


def test_reopening_drops_what_a_killed_run_left_half_done(tmp_path):
    store = TraceStore(str(tmp_path))
    traces, progress = rejection_sample(ROWS, ["a", "b", "c", "d"], [1] * 4, [True] * 4, [True] * 4, 2,
                                        "all", "s")
    store.append(traces[:2], progress[:1])
    # killed after writing problem 2's rows, before its progress line; and half-way through a line
    with open(store.data_path, "a") as f:
        f.write("".join(json.dumps(t) + "\n" for t in traces[2:]) + '{"problem_id": "3')
    reopened = TraceStore(str(tmp_path))
    assert reopened.done == {progress[0]["id"]}
    with open(reopened.data_path) as f:
        assert [json.loads(line)["messages"][-1]["content"] for line in f] == ["a", "b"]
    reopened.append(traces[2:], progress[1:])
    stats = reopened.finish()
    assert (stats["problems"], stats["kept"]) == (2, 4)
    assert os.path.exists(tmp_path / "stats.json") and os.path.exists(tmp_path / "data.parquet")


# The embedded SmolLM2 as teacher: it ends its replies by itself (a random tiny model almost never
# does, and cut-off traces are never kept); the verifier accepts by a simple rule.
TEACHER_RUN = [
    "model.path=smollm2-135m", "data.num_train=8", "data.num_eval=0", "rollout.group_size=4",
    "rollout.max_new_tokens=32", "rollout.max_model_len=256",
    "reward.functions={tests.user_plugins:even_length: 1.0}",
    "reward.num_workers=1", "logging.wandb_mode=disabled", "logging.progress_bar=false",
]
DISTILL = os.path.join(ROOT, "configs", "distill_countdown_cpu.yaml")


@pytest.mark.e2e
def test_killed_distill_run_resumes_without_redoing_or_duplicating(ray_job, smollm2, tmp_path):
    from launcher.distill import distill
    from system.config.grpo import load_config
    from system.config.recipe import DistillConfig, validate_distill

    run = TEACHER_RUN + ["chunk_size=2", f"logging.output_dir={tmp_path}", "logging.run_name=d"]
    address = ray_job.get_runtime_context().gcs_address
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher", "distill.py"), "--config",
                             DISTILL, *run, f"ray_address={address}"], env={**os.environ, "PYTHONPATH": ROOT},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = tmp_path / "d" / "progress.jsonl"
    deadline = time.time() + 300
    while not (progress.exists() and progress.read_text().count("\n") >= 2) and time.time() < deadline:
        assert proc.poll() is None, "the run ended before its first chunk"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # after the first chunk, likely in the middle of the next
    proc.wait()
    time.sleep(2)  # let Ray reap the dead job's actors
    cfg = load_config(DISTILL, run, schema=DistillConfig, check=validate_distill)
    problems = {problem_id(r) for r in load_problems(cfg)}
    before = [json.loads(line) for line in progress.read_text().splitlines() if line.endswith("}")]
    assert 2 <= len(before) < len(problems)

    data_path = distill(cfg, str(tmp_path / "d"))

    after = [json.loads(line) for line in progress.read_text().splitlines()]
    assert after[:len(before)] == before, "finished problems were redone"
    ids = [p["id"] for p in after]
    assert len(ids) == len(set(ids)) and set(ids) == problems
    with open(data_path) as f:
        rows = [json.loads(line) for line in f]
    assert rows, "the verifier accepts about half of the complete traces: some must be kept"
    keys = [(r["problem_id"], r["messages"][-1]["content"]) for r in rows]
    assert len(keys) == len(set(keys)), "a trace is in the data twice"
    for p in after:  # every problem's kept traces are in the data, once
        assert sum(r["problem_id"] == p["id"] for r in rows) == p["kept"]
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert (stats["problems"], stats["samples"], stats["kept"]) == (len(ids), 4 * len(ids), len(rows))


def load_problems(cfg):
    from system.data import load_splits

    return load_splits(cfg.data)[0]
