"""Learning parity of asynchronous GRPO: the demo config (configs/grpo_countdown_cpu.yaml) at
schedule.max_staleness = 1 against 0, a few seeds each, in the default layout.

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/parity.py [--seeds 1 2] [--ks 0 1]

Per run: held-out greedy eval accuracy at each eval, against samples trained on and against wall
time since the first step; saved to bench/results/parity.json and drawn in docs/img/parity.png.
At the same number of samples, k = 1 should be within the run-to-run spread of k = 0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

from common import ENV, PYTHON, ROOT, save, warn_if_busy

from system.reporting.metrics import read_metrics

DEMO = os.path.join(ROOT, "configs", "grpo_countdown_cpu.yaml")


def demo_run(k: int, seed: int, extra: list[str]) -> dict:
    name = f"parity-k{k}-s{seed}-{time.strftime('%H%M%S')}"
    cmd = [PYTHON, os.path.join(ROOT, "launcher", "grpo.py"), "--config", DEMO, f"seed={seed}",
           f"schedule.max_staleness={k}", "logging.output_dir=bench/runs", f"logging.run_name={name}",
           "logging.wandb_mode=disabled", "logging.progress_bar=false", "checkpoint.save_final=false",
           "checkpoint.every=0", *extra]
    print("$", " ".join(cmd[1:]), flush=True)
    warn_if_busy()
    subprocess.run(cmd, cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL)
    records = read_metrics(os.path.join(ROOT, "bench", "runs", name))
    per_step = 4 * 8  # the demo's prompts x group size
    wall, evals = 0.0, []
    for r in records:
        if "eval/accuracy" in r:
            evals.append({"step": r["step"], "samples": r["step"] * per_step, "wall_s": wall,
                          "accuracy": r["eval/accuracy"], "reward": r["eval/reward_mean"]})
        wall += r.get("timing/wall_s", 0.0) - r.get("timing/eval_s", 0.0)  # training time only
    return {"k": k, "seed": seed, "evals": evals,
            "train_reward": [r["reward/mean"] for r in records if "reward/mean" in r]}


def plot(runs: list[dict], path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    for ax, x, label in ((fig.add_subplot(1, 2, 1), "samples", "samples trained on"),
                         (fig.add_subplot(1, 2, 2), "wall_s", "training wall time (s), evals left out")):
        for run in runs:
            ax.plot([e[x] for e in run["evals"]], [e["accuracy"] for e in run["evals"]], marker="o",
                    color="C0" if run["k"] == 0 else "C1", alpha=0.8, label=f"k={run['k']} seed {run['seed']}")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out greedy accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ks", type=int, nargs="+", default=[0, 1])
    args, extra = parser.parse_known_args()
    runs = [demo_run(k, seed, extra) for seed in args.seeds for k in args.ks]
    for run in runs:
        print(f"k={run['k']} seed {run['seed']}: " + ", ".join(
            f"step {e['step']} acc {e['accuracy']:.3f} ({e['wall_s']:.0f} s)" for e in run["evals"]), flush=True)
    save("parity", {"runs": runs, "extra": extra})
    plot(runs, os.path.join(ROOT, "docs", "img", "parity.png"))


if __name__ == "__main__":
    main()
