"""Derived seeds: the same everywhere, distinct for every purpose and index."""

from system.seeds import derive_seed


def test_derived_seeds_are_stable_distinct_and_in_range():
    purposes = ("step", "eval", "shuffle", "minibatches")
    seeds = {(p, i): derive_seed(1, p, i) for p in purposes for i in range(200)}
    assert len(set(seeds.values())) == len(seeds)  # no two purposes or indexes collide
    assert derive_seed(1, "step", 3) == derive_seed(1, "step", 3) != derive_seed(2, "step", 3)
    assert all(0 <= s < 2**31 for s in seeds.values())
    assert derive_seed(1, "step", 3) == 430571225  # a hash: the same in every process (no PYTHONHASHSEED)
