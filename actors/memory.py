"""Resident memory of every actor and of the driver, sampled once a step: `memory/<role>_rss_gb`.

A leak shows as resident memory that keeps growing step after step long after warm-up; the metric
puts it in metrics.jsonl, the trackers and the Ray dashboard (a gauge, as every step metric), and
bench/leak.py fits its growth per 100 steps over long runs. A role with several actors (engine-0,
engine-1) reports the largest of them, so one leaking actor shows. RSS counts the pages of the
process that are in RAM (weights, KV cache, Python objects), in GB of 10^9 bytes.

What grew over hundreds of steps was not live memory: glibc keeps the pages that a step's freed
tensors (activations of varying size) leave inside its heaps, so a trainer's RSS climbed ~40-65 MB
per 100 steps, while tracemalloc saw under 0.2 MB of Python objects grow and `malloc_trim(0)` gave
back 420 MB of the policy's 1.2 GB. So the per-step call hands them back (`sample`) whenever the
process has grown by TRIM_GROWTH_GB since its last trim: RSS then follows live memory, and a real
leak still shows as a rising floor.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import psutil

from actors.calls import bounded_get

TRIM_GROWTH_GB = 0.05  # trim once a process's RSS is this far above what it was after its last trim
_after_trim = {"gb": 0.0}  # this process's RSS right after its last trim


def rss_gb() -> float:
    """This process's resident memory (psutil reads /proc/self/statm on Linux: microseconds)."""
    return psutil.Process().memory_info().rss / 1e9


def trim() -> bool:
    """Hand the free pages of glibc's heaps back to the OS; False where libc is not glibc."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


def sample(_actor=None) -> float:
    """This process's RSS in GB, after a trim if it has grown by TRIM_GROWTH_GB since the last one.
    `_actor`: what `__ray_call__` passes, unused."""
    rss = rss_gb()
    if rss - _after_trim["gb"] > TRIM_GROWTH_GB and trim():
        rss = _after_trim["gb"] = rss_gb()
    return rss


def role_of(name: str) -> str:
    """`engine-1` -> `engine`: the role an actor's name (actors/calls.py: actor_names) is of."""
    return name.rsplit("-", 1)[0] if name[-1:].isdigit() else name


def per_role(rss: dict[str, float]) -> dict[str, float]:
    """{actor name: RSS} -> {`memory/<role>_rss_gb`: the largest RSS of the role's actors}."""
    largest: dict[str, float] = {}
    for name, value in rss.items():
        key = f"memory/{role_of(name)}_rss_gb"
        largest[key] = max(largest.get(key, 0.0), value)
    return largest


def memory_metrics(named: list[tuple[str, object]], timeout_s: float) -> dict[str, float]:
    """The driver's RSS and that of every (name, actor handle), one small call each, all at once. An
    actor busy in a call answers once it is done (an engine at once: it has a second thread); one that
    died or gives no answer within `timeout_s` raises ActorFailure (phase `memory`), as any call."""
    calls = [(name, actor.__ray_call__.remote(sample)) for name, actor in named]
    values = bounded_get(calls, "memory", timeout_s)
    return per_role({"driver": sample(), **{name: value for (name, _), value in zip(named, values)}})
