"""The bare train step run inside our job's policy actor, with the job's other actors alive and
idle, then again after they are killed: does their mere presence slow the update?

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/in_job.py --batches bench/runs/overhead-batches.pt

`--batches`: the batches bench/bare.py generated (bench/overhead.py leaves them in its temp folder).
The step is bench/bare.py's `minimal_step`, the one that takes 27 s in a plain process.
"""

from __future__ import annotations

import argparse
import os
import random
import time

import ray
import torch
from common import BENCH_CONFIG, fmt, save, spread, warn_if_busy

from system.config.grpo import load_config
from system.models import resolve_model

BENCH = os.path.dirname(os.path.abspath(__file__))


def timed_steps(policy, batches: list, micro_batch: int) -> list[float]:
    from bare import minimal_step

    rng, times = random.Random(0), []
    for batch in batches:
        start = time.perf_counter()
        minimal_step(policy.engine, batch, micro_batch, 1.0, rng)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", required=True)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from actors.cluster import build_actors, start_ray
    from actors.placement import Placement

    warn_if_busy()
    os.environ["PYTHONPATH"] = os.pathsep.join([BENCH, os.environ.get("PYTHONPATH", "")])  # actors import bare.py
    cfg = load_config(BENCH_CONFIG)
    model_path = resolve_model(cfg.model.path)
    start_ray("", Placement.logical_cpus(cfg.roles(), cfg.placement))
    actors = build_actors(cfg, model_path, AutoTokenizer.from_pretrained(model_path))
    policy = actors.policy.actors[0]
    batches = torch.load(args.batches)[:3]
    mb = cfg.train.micro_batch_size
    with_others = ray.get(policy.__ray_call__.remote(timed_steps, batches, mb))
    for actor in actors.engines.engines + actors.reference.actors + actors.rewards.workers:
        ray.kill(actor)
    time.sleep(5)
    alone = ray.get(policy.__ray_call__.remote(timed_steps, batches, mb))
    warn_if_busy()
    result = {"with_idle_engine_reference_rewards_s": spread(with_others[1:]), "policy_alone_s": spread(alone[1:]),
              "raw": {"with_others": with_others, "alone": alone}}
    save("in_job", result)
    print("\nbare step in the policy actor: with the job's other actors alive "
          f"{fmt(result['with_idle_engine_reference_rewards_s'])} s, "
          f"after killing them {fmt(result['policy_alone_s'])} s")


if __name__ == "__main__":
    main()
