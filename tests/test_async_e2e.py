"""Asynchronous GRPO through the real stack (tiny model): rollouts collected up to k steps ahead of
the updates, on older weights, every token stamped by the engine with the version that sampled it,
and corrected by truncated importance sampling."""

import pytest

from tests.test_grpo_e2e import run


@pytest.mark.e2e
def test_rollouts_run_ahead_of_the_trainer_within_the_staleness_bound(ray_job, tmp_path):
    k = 2
    actors, metrics = run(tmp_path, "steps=4", f"schedule.max_staleness={k}", "algorithm.off_policy=tis",
                          "algorithm.off_policy_cap=2.0")
    actors.shutdown()
    assert [m["step"] for m in metrics] == [0, 1, 2, 3]
    staleness = [m["async/staleness_max"] for m in metrics]
    print("staleness per step:", staleness, "buffer:", [m["async/buffer_fill"] for m in metrics])
    assert staleness[0] == 0 and all(s <= min(step, k) for step, s in enumerate(staleness))
    # Step 1's batch is collected while step 0 trains: on the initial weights, one version behind.
    assert staleness[1] == 1 and max(staleness) == k
    for m in metrics:
        assert m["async/staleness_mean"] <= m["async/staleness_max"]
        assert 0 < m["off_policy/ratio_mean"] and m["off_policy/ratio_max"] >= 1.0
        assert 0.0 <= m["off_policy/masked_frac"] <= 1.0
        assert 0.0 <= m["timing/trainer_idle_frac"] <= 1.0 and 0.0 <= m["timing/engine_idle_frac"] <= 1.0
    # Trained on stale samples, the trainer's policy has moved away from the sampler's.
    assert metrics[2]["sync/logprob_abs_diff_mean"] > metrics[0]["sync/logprob_abs_diff_mean"]
