"""Our GRPO job, exactly as launcher/grpo.py runs it, plus the wall-clock time of every step.

    .venv/bin/python bench/run_ours.py --out FILE.json --config bench/grpo_bench.yaml [key=value ...]

`timing/step_s` is the sum of the timed phases; the wall time between two logged steps also
holds what no phase times (building sequences, advantages, logging): the figure a user waits for.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import yaml
from common import since_start

import launcher.grpo as grpo
import launcher.lifecycle as lifecycle
from system.reporting.metrics import MetricsLogger, read_metrics

clock = {}


class WallClockLogger(MetricsLogger):
    """The run's logger, stamping each step with the wall time since the previous one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        clock["startup_s"] = since_start()  # config, model, Ray, every actor, sync group
        clock["last"] = time.perf_counter()

    def log(self, metrics: dict, step: int) -> None:
        now = time.perf_counter()
        super().log({**metrics, "bench/wall_s": now - clock["last"]}, step)
        clock["last"] = now


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args, rest = parser.parse_known_args()
    lifecycle.MetricsLogger = WallClockLogger  # the logger every launcher makes
    run_dir = grpo.main(rest)
    with open(os.path.join(run_dir, "config.yaml")) as f:
        cfg = yaml.safe_load(f)
    steps = [s for s in read_metrics(run_dir) if "response/length_mean" in s]  # not a run's closing eval record
    for s in steps:  # response/length_mean is per sample
        s["bench/generated_tokens"] = s["response/length_mean"] * cfg["prompts_per_step"] * cfg["rollout"]["group_size"]
    with open(args.out, "w") as f:
        json.dump({"run_dir": run_dir, "argv": rest, "startup_s": clock["startup_s"],
                   "total_s": since_start(), "steps": steps}, f)
