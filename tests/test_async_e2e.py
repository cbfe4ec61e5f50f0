"""Asynchronous GRPO through the real stack (tiny model, two engines): rollouts collected up to k
steps ahead of the updates, on older weights, every token stamped by the engine with the version
that sampled it, and corrected by truncated importance sampling."""

import json
import os
import re

import pytest

from actors.dashboard import gauge_name
from tests.test_grpo_e2e import ROOT, TINY_RUN, run


@pytest.mark.e2e
@pytest.mark.parametrize("k", [2])  # k = 0, 1, 2: tests/test_producer.py; k = 1 through the stack: the resume test
def test_rollouts_run_ahead_of_the_trainer_within_the_staleness_bound(ray_job, tmp_path, k):
    # Two engines: each takes the next chunk of a batch when it is free.
    actors, metrics = run(tmp_path, "steps=4", f"schedule.max_staleness={k}", "algorithm.off_policy=tis",
                          "algorithm.off_policy_cap=2.0", "rollout.num_engines=2",
                          "placement.engine_cpus=0.25",
                          "eval.every=3", "eval.num_samples=2", "eval.pass_k=[1,2]", "data.num_eval=4")
    actors.shutdown()
    assert [m["step"] for m in metrics] == [0, 1, 2, 3, 4]  # 4: the eval after the last update
    exported = {"ray_" + gauge_name(key) for m in metrics for key in m}
    metrics = metrics[:4]
    staleness = [m["async/staleness_max"] for m in metrics]
    print("staleness per step:", staleness, "buffer:", [m["async/buffer_fill"] for m in metrics])
    assert staleness[0] == 0 and all(s <= min(step, k) for step, s in enumerate(staleness))
    # Step 1's batch is collected while step 0 trains: on the initial weights, one version behind.
    assert staleness[1] == 1 and max(staleness) == k
    for m in metrics:
        assert m["async/staleness_mean"] <= m["async/staleness_max"]
        assert sum(m[f"async/staleness_{d}_frac"] for d in range(k + 1)) == pytest.approx(1.0)
        assert 0 < m["off_policy/ratio_mean"] and m["off_policy/ratio_max"] >= 1.0
        assert 0.0 <= m["off_policy/masked_frac"] <= 1.0
        assert 0.0 <= m["timing/trainer_idle_frac"] <= 1.0 and 0.0 <= m["timing/engine_idle_frac"] <= 1.0
    # Trained on stale samples, the trainer's policy has moved away from the sampler's.
    assert metrics[2]["sync/logprob_abs_diff_mean"] > metrics[0]["sync/logprob_abs_diff_mean"]

    # Every panel of the shipped Grafana dashboard shows a gauge that this run exported.
    with open(os.path.join(ROOT, "docs", "grafana", "r1ray-dashboard.json")) as f:
        queries = [t["expr"] for panel in json.load(f)["panels"] for t in panel["targets"]]
    shown = {name for q in queries for name in re.findall(r"(ray_r1ray_\w+)\{", q)}
    assert len(shown) >= 15 and not shown - exported, f"panels without a gauge: {sorted(shown - exported)}"


@pytest.mark.e2e
def test_an_asynchronous_run_resumes_without_losing_or_repeating_prompts(ray_job, tmp_path):
    """At k = 1 the producer has drawn step 1's prompts (while step 0 trains) before step 1's
    checkpoint is written; the checkpoint must still hold the data position from before them, so the
    resumed run trains the prompts of step 1 (and the samples in flight are collected again)."""
    from launcher.grpo import train
    from system.config.grpo import load_config
    from system.reporting.metrics import read_metrics

    run_args = ["steps=2", "prompts_per_step=2", "rollout.group_size=2", "reward.num_workers=1",
                "schedule.max_staleness=1", "checkpoint.every=1", "checkpoint.keep_last=5"]
    actors, first = run(tmp_path, *run_args)
    actors.shutdown()
    assert first[1]["async/staleness_max"] == 1  # step 1's batch was drawn ahead, on the initial weights
    cfg = load_config(os.path.join(ROOT, "configs", "grpo_countdown_cpu.yaml"),
                      [*TINY_RUN, *run_args, f"logging.output_dir={tmp_path}", "logging.run_name=run",
                       f"resume={tmp_path}/run/checkpoints/step_000001"])
    train(cfg, str(tmp_path / "run")).shutdown()
    resumed = read_metrics(str(tmp_path / "run"))
    assert [m["step"] for m in resumed] == [0, 1]
    # the same prompts, once
    assert [m["data/position"] for m in resumed] == [m["data/position"] for m in first]
    # the resumed step's batch: collected again, by the resumed policy
    assert resumed[1]["async/staleness_max"] == 0
