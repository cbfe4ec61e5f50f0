"""Is the same computation slower inside a Ray actor? A forward + backward of SmolLM2-135M on one
micro-batch (16 x 240 tokens, bf16, LM head on the last 130 positions), timed in this process and
in Ray actors set up as our policy actor is (0.5 CPU, torch threads set in __init__).

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/actor_cost.py [--repeats 4]

Variants: `plain` (this process), `actor` (as our actors run), `actor_nice0` (the actor's
process priority put back to 0: Ray starts workers at niceness 15), `actor_omp` (OMP_NUM_THREADS
= all cores in the actor's environment: Ray sets 1 in a 0.5-CPU actor).
"""

from __future__ import annotations

import argparse
import os
import time

import ray
import torch
from common import fmt, save, spread, warn_if_busy

from system.models import resolve_model


def micro_step_times(repeats: int) -> dict:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m"), dtype=torch.bfloat16)
    tokens = torch.randint(0, 49152, (16, 240), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        logits = model(input_ids=tokens, logits_to_keep=130).logits.float()
        logits.logsumexp(-1).mean().backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return {"s": times[1:], "torch_threads": torch.get_num_threads(), "niceness": os.nice(0),
            "omp_env": os.environ.get("OMP_NUM_THREADS")}


@ray.remote(num_cpus=0.5)
class Worker:
    def __init__(self, nice0: bool):
        torch.set_num_threads(os.cpu_count())  # as system/platform.py's set_threads(0) in our actors
        if nice0:
            os.setpriority(os.PRIO_PROCESS, 0, 0)

    def run(self, repeats: int) -> dict:
        return micro_step_times(repeats)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    warn_if_busy()
    torch.set_num_threads(os.cpu_count())
    results = {"plain": micro_step_times(args.repeats)}
    ray.init(num_cpus=2, include_dashboard=False)
    variants = {"actor": ({}, False), "actor_nice0": ({}, True),
                "actor_omp": ({"OMP_NUM_THREADS": str(os.cpu_count())}, False)}
    for name, (env, nice0) in variants.items():
        worker = Worker.options(runtime_env={"env_vars": env}).remote(nice0)
        results[name] = ray.get(worker.run.remote(args.repeats))
        ray.kill(worker)
    warn_if_busy()
    ray.shutdown()
    for r in results.values():
        r["spread"] = spread(r["s"])
    save("actor_cost", {"repeats": args.repeats, "variants": results})
    base = results["plain"]["spread"]["median"]
    print("\n| where | forward+backward s | x plain | torch threads | niceness | OMP_NUM_THREADS |\n"
          "|---|---:|---:|---:|---:|---|")
    for name, r in results.items():
        print(f"| {name} | {fmt(r['spread'], 2)} | {r['spread']['median'] / base:.2f} | {r['torch_threads']} "
              f"| {r['niceness']} | {r['omp_env']} |")


if __name__ == "__main__":
    main()
