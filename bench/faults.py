"""Failures injected per actor kind, on the CPU recipes with SmolLM2-135M: how long the driver takes
to notice a SIGKILLed actor, how long the recovery takes, and how many finished steps are lost.
The table of docs/reliability.md, "Actor failures".

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/faults.py [--gap 2]

Two runs in this process: the Countdown demo with a reference (algorithm.kl_coef=0.01, checkpoints
every 2 steps), whose engine, a reward worker, the reference and the policy rank are killed in
turn, each `--gap` steps after the last, half a second after a step was logged (in the middle of
the next); and the 24 game, whose env worker is killed after its first step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import RESULTS, ROOT, spread  # noqa: E402

from launcher.grpo import train  # noqa: E402
from system.config.grpo import load_config  # noqa: E402
from system.reporting.metrics import read_metrics  # noqa: E402
from tests.faults import Killer, read_faults  # noqa: E402

COMMON = ["logging.wandb_mode=disabled", "logging.progress_bar=false", "eval.every=0", "checkpoint.every=2",
          "checkpoint.keep_last=2", "checkpoint.save_final=false"]


def injected(config: str, overrides: list[str], plan: list[tuple[int, str]], out_dir: str) -> list[dict]:
    """Run `config` with `plan`'s kills; one row per kill."""
    name = os.path.splitext(os.path.basename(config))[0]
    cfg = load_config(os.path.join(ROOT, "configs", config), COMMON + overrides + [
        f"logging.output_dir={out_dir}", f"logging.run_name={name}"])
    run_dir = os.path.join(out_dir, name)
    os.makedirs(run_dir, exist_ok=True)
    killer = Killer(run_dir, plan, delay_s=0.5)
    killer.start()
    train(cfg, run_dir).shutdown()
    killer.join(timeout=30)
    faults, metrics = read_faults(run_dir), read_metrics(run_dir)
    step_s = spread([m["timing/wall_s"] for m in metrics if "timing/wall_s" in m][1:])["median"]
    rows = []
    for actor, killed_at in killer.kills:
        fault = next(f for f in faults if actor in f["restarted"] and f["detected"] >= killed_at)
        rows.append({"actor": actor, "config": config, "phase": fault["phase"], "together_with": [
            a for a in fault["restarted"] if a != actor], "detected_s": fault["detected"] - killed_at,
            "recovered_s": fault["recovered_s"], "steps_lost": max(0, fault["step"] - fault["resumed_at"]),
            "time_lost_s": fault["lost_s"], "step_s": step_s,
            "metrics_complete": sorted(m["step"] for m in metrics if "reward/mean" in m) == list(range(cfg.steps))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gap", type=int, default=2, help="steps between two kills of the demo run")
    args = parser.parse_args()
    kinds = ["engine-0", "reward-0", "reference-0", "policy-0"]
    plan = [(i * args.gap, actor) for i, actor in enumerate(kinds)]
    with tempfile.TemporaryDirectory() as out_dir:
        rows = injected("grpo_countdown_cpu.yaml", ["algorithm.kl_coef=0.01", f"steps={len(kinds) * args.gap + 1}"],
                        plan, out_dir)
        rows += injected("grpo_24point_cpu.yaml", ["steps=3", "prompts_per_step=4"], [(0, "env-0")], out_dir)
    print("| actor killed | noticed in phase | noticed after (s) | recovered in (s) | finished steps lost | "
          "time lost (s) | a step (s) | every step's metrics |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['actor']} | {r['phase']} | {r['detected_s']:.1f} | {r['recovered_s']:.1f} | {r['steps_lost']} | "
              f"{r['time_lost_s']:.1f} | {r['step_s']:.1f} | {'yes' if r['metrics_complete'] else 'NO'} |")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "faults.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
