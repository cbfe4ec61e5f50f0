"""reasoning-gym as data and verifier: rows from seeds (held-out ones never trained on), mixtures by
weight, the binarised reward and its hostile inputs, per-task metrics; and GRPO through the real stack
on a mixture (e2e)."""

import json
import os
import pickle
import subprocess
import sys
import time
from collections import Counter

import pytest
import reasoning_gym

from system.config.grpo import DataConfig, load_config
from system.data import DataError, load_splits
from system.data.reasoning_gym import HELD_OUT_OFFSET, PROCESS_DEPENDENT, SEED_STRIDE, task_specs
from system.reporting.evaluation import eval_metrics, task_reward_metrics
from system.rewards import correctness_reward, get_reward
from system.rollout.base import RolloutBatch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EASY_SUMS = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}  # 200 distinct questions


def splits(source="reasoning_gym:products", params=None, **kw):
    sizes = {"num_train": 50, "num_eval": 8, **kw}
    return load_splits(DataConfig(source=source, params=params or {}, **sizes))


def columns(row, k):
    return {key: [value] * k for key, value in row.items() if key != "messages"}


def test_rows_carry_prompt_answer_task_and_the_entry_as_json_data():
    train, held_out = splits()
    row = train[0]
    assert row["task"] == "products" and row["messages"] == [{"role": "user", "content": row["question"]}]
    assert row["task_config"] == {} and row["entry"] == {"seed": 0, "size": 500, "index": 0}
    assert json.loads(json.dumps(row)) == row  # plain JSON data: Ray workers and JSON files take it as it is


def test_held_out_items_come_from_a_seed_range_of_their_own():
    train, held_out = splits(seed=3)
    # Row i is reasoning-gym's item of entry seed base + i: training's from data.seed * 10^7, the
    # held-out ones 5 * 10^6 further (reasoning-gym's item i of seed s is its item 0 of seed s + i).
    def entry(offset):
        return reasoning_gym.create_dataset("products", seed=3 * SEED_STRIDE + offset, size=1)[0]["question"]

    assert [r["question"] for r in train[:3]] == [entry(i) for i in range(3)]
    assert [r["question"] for r in held_out[:3]] == [entry(HELD_OUT_OFFSET + j) for j in range(3)]
    # ... and the same held-out rows whatever training takes
    assert splits(seed=3, num_train=200, skip=30)[1] == held_out
    assert splits(seed=3, num_eval=0)[1] == []


def test_a_small_task_space_never_trains_on_a_held_out_or_skipped_question():
    train, held_out = splits("reasoning_gym:chain_sum", EASY_SUMS, num_train=500, num_eval=32, skip=40)
    assert len(train) == 500 and len({r["question"] for r in held_out}) == 32
    assert len({r["question"] for r in train}) < 200  # the space repeats: exclusion is by question
    assert not {r["question"] for r in held_out} & {r["question"] for r in train}
    first_rows, _ = splits("reasoning_gym:chain_sum", EASY_SUMS, num_train=40, num_eval=32)
    assert not {r["question"] for r in first_rows} & {r["question"] for r in train}


def test_too_small_a_task_space_is_an_error_that_says_so():
    with pytest.raises(DataError, match="task space is too small"):
        splits("reasoning_gym:chain_sum", {"min_terms": 2, "max_terms": 2, "max_digits": 1}, num_eval=300)


def test_a_mixture_draws_tasks_by_weight_and_each_keeps_its_config():
    params = {"tasks": {"chain_sum": {"weight": 3, "config": EASY_SUMS}, "products": {"weight": 1}}}
    train, held_out = splits("reasoning_gym", params, num_train=2000, num_eval=64)
    counts = Counter(r["task"] for r in train)
    assert set(counts) == {"chain_sum", "products"} and 0.70 < counts["chain_sum"] / 2000 < 0.80
    assert {r["task"] for r in held_out} == {"chain_sum", "products"}
    assert all(r["task_config"] == EASY_SUMS for r in train if r["task"] == "chain_sum")
    assert all(len(r["question"].split(": ")[1]) == len("1 + 2 =") for r in train if r["task"] == "chain_sum")


def test_a_table_of_difficulties_serves_one_task_by_name_and_the_mixture_of_weight_above_0():
    table = {"tasks": {"chain_sum": {"config": EASY_SUMS}, "products": {"weight": 0, "config": {"max_digits": 2}}}}
    def named(source):
        return [(spec.name, spec.config) for spec in task_specs(source, table)]

    assert named("reasoning_gym:products") == [("products", {"max_digits": 2})]
    assert named("reasoning_gym:gcd") == [("gcd", {})]  # not in the table: the library's defaults
    assert named("reasoning_gym") == [("chain_sum", EASY_SUMS)]  # products has weight 0
    calendar = {"tasks": ["weekday_of_date"]}  # calendar_arithmetic's own key `tasks` is a list: its config
    assert task_specs("reasoning_gym:calendar_arithmetic", calendar)[0].config == calendar


@pytest.mark.parametrize("source, params, message", [
    ("reasoning_gym:chain_summ", {}, "no task 'chain_summ' \\(did you mean 'chain_sum'\\?\\)"),
    ("reasoning_gym:chain_sum", {"max_term": 3}, "config \\{'max_term': 3\\} rejected.*'max_terms'"),
    ("reasoning_gym:chain_sum", {"min_terms": 5, "max_terms": 2}, "rejected"),
    ("reasoning_gym:chain_sum", {"seed": 1}, "sets \\['seed'\\]"),
    ("reasoning_gym", {"chain_sum": {}}, "one key, tasks"),
    ("reasoning_gym", {"tasks": {"chain_sum": {"weight": -1}}}, "weight must be a number >= 0"),
    ("reasoning_gym", {"tasks": {"chain_sum": {"weight": 0}}}, "every task .* has weight 0"),
    ("reasoning_gym:chain_sum", {"tasks": {"chain_summ": {}}}, "no task 'chain_summ'"),
    ("reasoning_gym", {"tasks": {"chain_sum": {"wieght": 2}}}, "takes weight and config"),
    ("reasoning_gym:ransom_note", {}, "'ransom_note': its items differ between processes"),
])
def test_bad_sources_and_params_are_errors_that_name_them(source, params, message):
    with pytest.raises(DataError, match=message):
        splits(source, params)


ITEM_IN_A_FRESH_PROCESS = ("import sys, reasoning_gym; "
                           "print(reasoning_gym.create_dataset(sys.argv[1], seed=5, size=8)[3]['question'])")


@pytest.mark.parametrize("task, differs", [("ransom_note", True), ("chain_sum", False)])
def test_refused_tasks_draw_other_items_under_another_hash_seed(task, differs):
    """Why PROCESS_DEPENDENT exists: the same item, made in two processes with other string hash seeds."""
    made = {subprocess.run([sys.executable, "-c", ITEM_IN_A_FRESH_PROCESS, task], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}, timeout=120, check=True).stdout
            for seed in (1, 2)}
    assert (len(made) == 2) == differs and (task in PROCESS_DEPENDENT) == differs


@pytest.fixture(scope="module")
def products_row():
    return splits("reasoning_gym:products", {"max_digits": 2})[0][0]


def test_the_reward_is_the_tasks_verifier_binarised(products_row):
    oracle = products_row["answer"]
    replies = [f"<answer>{oracle}</answer>", f"<answer> {oracle} </answer>",
               f"<answer>definitely wrong {oracle}</answer>",
               f"<answer>1</answer> then <answer>{oracle}</answer>",  # the last answer counts
               f"<answer>{oracle}</answer> <answer>1</answer>",
               oracle, "", f"<answer>{int(oracle) + 1}</answer>"]
    assert get_reward("reasoning_gym")(replies, **columns(products_row, len(replies))) == \
        [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert correctness_reward(["reasoning_gym"]) == "reasoning_gym"


def test_partial_credit_only_when_asked(products_row):
    oracle = products_row["answer"]
    reply = f"<answer>definitely wrong {oracle}</answer>"
    assert get_reward("reasoning_gym")([reply], **columns(products_row, 1)) == [0.0]
    partial = get_reward("reasoning_gym_partial")([reply], **columns(products_row, 1))[0]
    assert partial == pytest.approx(len(oracle) / len(f"definitely wrong {oracle}"))
    row, = splits("reasoning_gym:fraction_simplification", num_train=1, num_eval=1)[0]
    assert get_reward("reasoning_gym_partial")(["<answer>nonsense</answer>"], **columns(row, 1)) == [0.01]
    assert get_reward("reasoning_gym")(["<answer>nonsense</answer>"], **columns(row, 1)) == [0.0]


def test_huge_answers_score_zero_without_reaching_a_lenient_scorer():
    row, = splits("reasoning_gym:gsm_symbolic", num_train=1, num_eval=1)[0]
    oracle = row["answer"]
    # gsm_symbolic's own scorer pays 1.0 for the oracle followed by anything
    dataset = reasoning_gym.create_dataset("gsm_symbolic", seed=0, size=10)
    assert dataset.score_answer(f"{oracle} " + "9" * 200, dataset[0]) == 1.0  # (and slowly, on a long text)
    assert dataset[0]["question"] == row["question"]
    huge = f"{oracle} " + "9" * 1_000_000
    began = time.perf_counter()
    assert get_reward("reasoning_gym")([f"<answer>{huge}</answer>"], **columns(row, 1)) == [0.0]
    assert time.perf_counter() - began < 1.0


def test_a_scorer_that_raises_gives_none_not_a_score():
    row, = splits("reasoning_gym:prime_factorization", num_train=1, num_eval=1)[0]
    scores = get_reward("reasoning_gym")(["<answer>garbage</answer>", f"<answer>{row['answer']}</answer>"],
                                         **columns(row, 2))
    assert scores == [None, 1.0]


def test_a_row_sent_to_a_worker_scores_the_same(products_row):
    reply = [f"<answer>{products_row['answer']}</answer>"]
    for copy in (pickle.loads(pickle.dumps(products_row)), json.loads(json.dumps(products_row))):
        assert get_reward("reasoning_gym")(reply, **columns(copy, 1)) == [1.0]


def test_rows_of_another_source_are_a_setup_error():
    with pytest.raises(ValueError, match="columns 'task'"):
        get_reward("reasoning_gym")(["<answer>3</answer>"], answer=["3"])


def batch(rewards, tasks, scores=None):
    k = len(rewards)
    return RolloutBatch(tokens=[[1]] * k, loss_mask=[[1]] * k, logprobs=[[0.0]] * k, rewards=rewards,
                        scores=scores or {"reasoning_gym": rewards}, finish_reasons=["stop"] * k,
                        texts=[""] * k, versions=[[0]] * k, tasks=tasks)


def test_training_metrics_per_task():
    rollouts = batch([1.0, 0.0, None, 0.0, 1.0, 1.0], ["a", "a", "a", "a", "b", "b"])
    assert task_reward_metrics(rollouts, "reasoning_gym") == {
        "reward/a/mean": pytest.approx(1 / 3), "reward/a/accuracy": 0.25,
        "reward/b/mean": 1.0, "reward/b/accuracy": 1.0}
    assert task_reward_metrics(batch([1.0], []), "reasoning_gym") == {}  # rows without a task column


def test_eval_metrics_per_task():
    greedy = batch([1.0, 0.0, 0.0], ["a", "a", "b"])
    # 2 samples per problem: a's first problem 1 of 2 right, its second 0, b's 2 of 2
    sampled = batch([1.0, 0.0, 0.0, 0.0, 1.0, 1.0], ["a", "a", "a", "a", "b", "b"])
    metrics = eval_metrics(greedy, sampled, 2, [1, 2], "reasoning_gym")
    assert metrics["eval/a/greedy"] == 0.5 and metrics["eval/b/greedy"] == 0.0
    assert metrics["eval/a/pass@1"] == 0.25 and metrics["eval/a/pass@2"] == 0.5
    assert metrics["eval/b/pass@1"] == 1.0 and metrics["eval/accuracy"] == pytest.approx(1 / 3)


def test_the_shipped_config_asks_for_the_tags_the_reward_reads():
    cfg = load_config(os.path.join(ROOT, "configs", "grpo_reasoning_gym_cpu.yaml"))
    train, held_out = load_splits(cfg.data)
    assert len(train) == cfg.data.num_train and len(held_out) == cfg.data.num_eval
    assert "<answer>" in train[0]["messages"][-1]["content"] and cfg.data.response_prefix == "<answer>"
    reply = cfg.data.response_prefix + f" {train[0]['answer']} " + cfg.rollout.stop[0]
    assert get_reward("reasoning_gym")([reply], **columns(train[0], 1)) == [1.0]


MIXTURE = ("data.params={tasks: {chain_sum: {weight: 1, config: {max_terms: 2, max_digits: 1}}, "
           "products: {weight: 1}}}")


@pytest.mark.e2e
def test_grpo_trains_on_a_reasoning_gym_mixture(ray_job, tmp_path):
    from launcher.grpo import train
    from system.reporting.metrics import read_metrics

    overrides = ["model.path=tiny", "steps=2", "prompts_per_step=4", "rollout.group_size=4",
                 "rollout.max_new_tokens=8", "rollout.max_model_len=256", "train.micro_batch_size=8",
                 "reward.num_workers=1", "logging.wandb_mode=disabled", "logging.progress_bar=false",
                 "sync.bucket_mb=4", "eval.every=2", "eval.num_samples=2", "eval.pass_k=[1, 2]",
                 "data.source=reasoning_gym", MIXTURE, "data.num_eval=8", "data.num_train=64",
                 "checkpoint.save_final=false", f"logging.output_dir={tmp_path}", "logging.run_name=run"]
    cfg = load_config(os.path.join(ROOT, "configs", "grpo_reasoning_gym_cpu.yaml"), overrides)
    run_dir = os.path.join(str(tmp_path), "run")
    os.makedirs(run_dir)
    train(cfg, run_dir).shutdown()
    eval_tasks = {row["task"] for row in load_splits(cfg.data)[1]}
    assert eval_tasks == {"chain_sum", "products"}
    metrics = read_metrics(run_dir)
    steps = [m for m in metrics if "reward/mean" in m]
    assert [m["step"] for m in steps] == [0, 1]
    for m in steps:
        trained = {k.split("/")[1] for k in m if k.startswith("reward/") and k.endswith("/accuracy")
                   and k != "reward/accuracy"}
        assert trained and trained <= eval_tasks and 0 <= m["reward/reasoning_gym/mean"] <= 1
    evals = [m for m in metrics if "eval/accuracy" in m]
    assert [m["step"] for m in evals] == [0, 2]
    for m in evals:
        assert {f"eval/{t}/{k}" for t in eval_tasks for k in ("greedy", "pass@1", "pass@2")} <= set(m)
