"""The per-step memory gauge (actors/memory.py): RSS of this process, per role, and of live actors."""

import pytest

from actors.calls import ActorFailure
from actors.memory import memory_metrics, per_role, role_of, rss_gb, sample, trim


def test_rss_counts_the_pages_this_process_touches():
    before = rss_gb()
    block = bytearray(200 * 2**20)  # zero-filled: every page written, so resident
    grown = rss_gb() - before
    del block
    assert 0.19 < grown < 0.25, f"RSS grew {grown:.3f} GB for a 0.21 GB block"


@pytest.mark.skipif(not trim(), reason="malloc_trim is glibc's")
def test_a_sample_hands_the_pages_of_freed_heap_memory_back():
    sample()  # trimmed: the baseline
    blocks = [bytearray(64 * 2**10) for _ in range(3200)]  # 200 MB of heap chunks, under the mmap threshold
    kept = blocks[::16]  # every 16th stays alive, so that free() cannot shrink the heap from its top
    del blocks
    held = rss_gb()
    after = sample()
    assert held - after > 0.15, f"RSS {held:.3f} GB with 190 MB freed, {after:.3f} GB after the sample's trim"
    assert len(kept) == 200


def test_roles_come_from_actor_names_and_report_their_largest_actor():
    assert [role_of(n) for n in ["engine-0", "reward-12", "policy-1", "driver"]] == \
        ["engine", "reward", "policy", "driver"]
    assert per_role({"driver": 0.5, "engine-0": 2.0, "engine-1": 2.5, "reward-0": 0.2}) == {
        "memory/driver_rss_gb": 0.5, "memory/engine_rss_gb": 2.5, "memory/reward_rss_gb": 0.2}


@pytest.mark.e2e
def test_actors_report_their_own_memory_and_a_dead_one_is_named(ray_job):
    import ray

    @ray.remote(num_cpus=0)
    class Holder:
        def hold(self, mb: int) -> None:
            self.block = bytearray(mb * 2**20)

    small, big = Holder.remote(), Holder.remote()
    ray.get(big.hold.remote(300))
    metrics = memory_metrics([("holder-0", small), ("holder-1", big)], timeout_s=30)
    assert set(metrics) == {"memory/driver_rss_gb", "memory/holder_rss_gb"}
    alone = memory_metrics([("holder-0", small)], timeout_s=30)["memory/holder_rss_gb"]
    assert metrics["memory/holder_rss_gb"] - alone > 0.25  # the largest actor of the role: the one holding 300 MB

    ray.kill(big)
    with pytest.raises(ActorFailure, match=r"holder-1: the actor died .*\(phase: memory\)"):
        memory_metrics([("holder-0", small), ("holder-1", big)], timeout_s=30)
