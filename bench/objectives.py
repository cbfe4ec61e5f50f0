"""The policy objectives side by side on the CPU demo task (configs/algorithms/*_countdown_cpu.yaml: the
demo with two updates per batch): held-out greedy accuracy after the demo's 15 steps, per seed, with
the clip fraction and entropy each objective trained at. The table goes to docs/algorithms.md.

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/objectives.py [--seeds 1 2] [--objectives ppo gspo]

Each run takes ~4 min here. Results merge into bench/results/objectives.json by (objective, seed), so
more seeds can be added by later calls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time

from common import ENV, PYTHON, RESULTS, ROOT, save, warn_if_busy

from system.reporting.metrics import read_metrics

OBJECTIVES = ["ppo", "gspo", "gspo_token", "cispo"]


def run(objective: str, seed: int) -> dict:
    name = f"objective-{objective}-s{seed}-{time.strftime('%H%M%S')}"
    cmd = [PYTHON, os.path.join(ROOT, "launcher", "grpo.py"), "--config",
           os.path.join(ROOT, "configs", "algorithms", f"{objective}_countdown_cpu.yaml"), f"seed={seed}",
           "logging.output_dir=bench/runs", f"logging.run_name={name}", "logging.wandb_mode=disabled",
           "logging.progress_bar=false", "checkpoint.every=0", "checkpoint.save_final=false"]
    print("$", " ".join(cmd[1:]), flush=True)
    warn_if_busy()
    start = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL)
    records = read_metrics(os.path.join(ROOT, "bench", "runs", name))
    train = [r for r in records if "reward/mean" in r]
    return {
        "objective": objective, "seed": seed, "wall_s": round(time.monotonic() - start, 1),
        "eval_accuracy": [r["eval/accuracy"] for r in records if "eval/accuracy" in r],
        "reward_last5": statistics.mean(r["reward/mean"] for r in train[-5:]),
        "clip_frac_mean": statistics.mean(r["train/clip_frac"] for r in train),
        "entropy_mean": statistics.mean(r["train/entropy"] for r in train),
        "skipped_updates": sum(r.get("train/skipped_updates", 0) for r in train),
    }


def table(rows: list[dict]) -> str:
    lines = ["| objective | seeds | final eval accuracy, per seed | mean | clip frac | entropy | reward (last 5) |",
             "|---|---|---|---|---|---|---|"]
    for objective in OBJECTIVES:
        mine = sorted((r for r in rows if r["objective"] == objective), key=lambda r: r["seed"])
        if not mine:
            lines.append(f"| {objective} | - | not measured | | | | |")
            continue
        finals = [r["eval_accuracy"][-1] for r in mine]
        clip, entropy, reward = (statistics.mean(r[key] for r in mine)
                                 for key in ("clip_frac_mean", "entropy_mean", "reward_last5"))
        lines.append(f"| {objective} | {', '.join(str(r['seed']) for r in mine)} | "
                     f"{', '.join(f'{a:.3f}' for a in finals)} | {statistics.mean(finals):.3f} | "
                     f"{clip:.3f} | {entropy:.3f} | {reward:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--objectives", nargs="+", default=OBJECTIVES, choices=OBJECTIVES)
    args = parser.parse_args()
    path = os.path.join(RESULTS, "objectives.json")
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = json.load(f)["rows"]
    for seed in args.seeds:  # seed by seed: every objective gets its first seed before any gets a second
        for objective in args.objectives:
            row = run(objective, seed)
            rows = [r for r in rows if (r["objective"], r["seed"]) != (objective, seed)] + [row]
            save("objectives", {"rows": rows})  # after every run: a cut-short bench keeps what it measured
    print(table(rows))


if __name__ == "__main__":
    main()
