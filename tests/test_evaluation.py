"""Held-out figures as R1 reports them: pass@1 is the mean correctness of the k samples, greedy beside it."""

import itertools

import pytest

from system.config.grpo import EvalConfig
from system.reporting.evaluation import eval_metrics, pass_at_k
from system.reporting.run_report import PANELS
from system.rollout.base import RolloutBatch


def batch(correct: list[bool], tasks: list[str]) -> RolloutBatch:
    k = len(correct)
    rewards = [float(c) for c in correct]
    return RolloutBatch(tokens=[[1]] * k, loss_mask=[[1]] * k, logprobs=[[0.0]] * k, rewards=rewards,
                        scores={"reasoning_gym": rewards}, finish_reasons=["stop"] * k, texts=[""] * k,
                        versions=[[0]] * k, tasks=tasks)


@pytest.mark.parametrize("c", range(9))
def test_pass_at_1_is_the_fraction_of_correct_samples(c):
    assert pass_at_k(8, c, 1) == pytest.approx(c / 8)


@pytest.mark.parametrize("n,c,k", [(4, 1, 2), (5, 2, 3), (6, 0, 2), (6, 5, 4), (8, 3, 8)])
def test_pass_at_k_counts_the_k_subsets_that_hold_a_correct_sample(n, c, k):
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_eval_metrics_report_pass_at_1_and_greedy_per_task_and_overall():
    # 2 problems of task a, 1 of task b; k = 8 samples each
    a1, a2, b1 = [True] * 2 + [False] * 6, [False] * 8, [True] * 8
    greedy = batch([False, True, True], ["a", "a", "b"])
    sampled = batch(a1 + a2 + b1, ["a"] * 16 + ["b"] * 8)
    metrics = eval_metrics(greedy, sampled, 8, [1, 8], "reasoning_gym")
    assert metrics["eval/a/pass@1"] == pytest.approx((2 / 8 + 0) / 2)  # the mean over problems of c / k
    assert metrics["eval/b/pass@1"] == 1.0 and metrics["eval/a/pass@8"] == 0.5
    assert metrics["eval/pass@1"] == pytest.approx(sum(a1 + a2 + b1) / 24)
    assert metrics["eval/a/greedy"] == 0.5 and metrics["eval/b/greedy"] == 1.0
    assert metrics["eval/accuracy"] == pytest.approx(2 / 3)


def test_the_reasoning_gym_config_samples_as_r1_and_the_default_as_the_rollout():
    from system.config.grpo import load_config

    r1 = load_config("configs/grpo_reasoning_gym_cpu.yaml").eval
    assert (r1.num_samples, r1.temperature, r1.top_p) == (8, 0.6, 0.95) and 1 in r1.pass_k
    default = EvalConfig()
    assert (default.temperature, default.top_p) == (1.0, None)  # None: rollout.top_p


def test_the_report_plots_each_tasks_pass_at_1_and_greedy():
    [wanted] = [wanted for title, wanted, _ in PANELS if title == "Eval per task (held-out)"]
    assert wanted("eval/chain_sum/pass@1") and wanted("eval/chain_sum/greedy")
    assert not wanted("eval/pass@1") and not wanted("eval/chain_sum/pass@8")
