"""The off-policy corrections side by side on the demo config, one step stale
(schedule.max_staleness=1): how far the sampler's log-probs are from the trainer's, how large the
importance ratios get, how many tokens each correction drops, and where reward and eval end.

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/off_policy.py [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from common import ENV, PYTHON, ROOT, save, warn_if_busy

from system.reporting.metrics import read_metrics

CORRECTIONS = ["none", "tis", "mis", "decoupled"]


def run(correction: str, steps: int) -> dict:
    name = f"offpolicy-{correction}-{time.strftime('%H%M%S')}"
    cmd = [PYTHON, os.path.join(ROOT, "launcher", "grpo.py"), "--config",
           os.path.join(ROOT, "configs", "grpo_countdown_cpu.yaml"), f"steps={steps}", "schedule.max_staleness=1",
           f"algorithm.off_policy={correction}", "logging.output_dir=bench/runs", f"logging.run_name={name}",
           "logging.wandb_mode=disabled", "logging.progress_bar=false", "checkpoint.save_final=false",
           f"eval.every={steps}"]
    print("$", " ".join(cmd[1:]), flush=True)
    warn_if_busy()
    subprocess.run(cmd, cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL)
    records = read_metrics(os.path.join(ROOT, "bench", "runs", name))
    train = [r for r in records if "reward/mean" in r]
    mean = lambda key: statistics.mean(r[key] for r in train if key in r)  # noqa: E731
    return {
        "logprob_abs_diff_mean": mean("sync/logprob_abs_diff_mean"),
        "logprob_abs_diff_max": max(r["sync/logprob_abs_diff_max"] for r in train),
        "ratio_max": max((r["off_policy/ratio_max"] for r in train if "off_policy/ratio_max" in r), default=None),
        "masked_frac": mean("off_policy/masked_frac") if correction != "none" else 0.0,
        "grad_norm_max": max(r["train/grad_norm"] for r in train),
        "reward_last5": statistics.mean(r["reward/mean"] for r in train[-5:]),
        "eval_accuracy": [r["eval/accuracy"] for r in records if "eval/accuracy" in r],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    rows = {c: run(c, args.steps) for c in CORRECTIONS}
    print("| correction | logprob diff mean | diff max | ratio max | masked | grad norm max "
          "| reward (last 5) | eval acc |")
    for c, r in rows.items():
        ratio = f"{r['ratio_max']:.2f}" if r["ratio_max"] is not None else "-"
        print(f"| {c} | {r['logprob_abs_diff_mean']:.4f} | {r['logprob_abs_diff_max']:.2f} | {ratio} | "
              f"{r['masked_frac']:.4f} | {r['grad_norm_max']:.2f} | {r['reward_last5']:.3f} | "
              f"{' -> '.join(f'{a:.3f}' for a in r['eval_accuracy'])} |")
    save("off_policy", {"steps": args.steps, "rows": rows})


if __name__ == "__main__":
    main()
