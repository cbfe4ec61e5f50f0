"""Does any process grow over a long run? Resident memory per role (`memory/<role>_rss_gb`, sampled
every step: actors/memory.py) over hundreds of steps of the tiny model, for three kinds of run, and
its growth per 100 steps after warm-up: the least-squares slope over steps `--warmup`..N. The table
of docs/reliability.md, "Memory".

    flock /tmp/r1ray-long.lock .venv/bin/python bench/leak.py [--steps 300] [--kinds sync,async,multiturn]

Each kind runs in a fresh process (its own Ray runtime): `sync`, single-turn Countdown with a
reference and two reward workers; `async`, the same with rollouts one step ahead
(schedule.max_staleness=1); `multiturn`, the 24 game's episodes in an env worker. Results are merged
into bench/results/leak.json by kind, so kinds may run one at a time; `--refit` fits the runs again
from their metrics.jsonl without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import ENV, PYTHON, RESULTS, ROOT, machine, warn_if_busy  # noqa: E402

from system.reporting.metrics import read_metrics  # noqa: E402

FLAT_MB = 5.0  # growth per 100 steps after warm-up that we call flat
WINDOW = 10  # steps per window of the RSS floor
TINY = ["model.path=tiny", "prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=16",
        "algorithm.kl_coef=0.01", "eval.every=0", "checkpoint.every=0", "checkpoint.save_final=false",
        "logging.wandb_mode=disabled", "logging.progress_bar=false"]
KINDS = {
    "sync": ("grpo_countdown_cpu.yaml", ["rollout.max_model_len=256"]),
    "async": ("grpo_countdown_cpu.yaml", ["rollout.max_model_len=256", "schedule.max_staleness=1"]),
    "multiturn": ("grpo_24point_cpu.yaml", ["env.params.max_turns=2", "env.max_context_tokens=512",
                                            "rollout.max_model_len=512"]),  # 2 turns: 2-3 s a step, not 15-20
}
OUT = os.path.join(RESULTS, "leak.json")


def run(kind: str, steps: int) -> str:
    """One run of `kind` for `steps` steps; returns its run directory."""
    config, overrides = KINDS[kind]
    run_dir = os.path.join(ROOT, "bench", "runs", f"leak-{kind}-{time.strftime('%H%M%S')}")
    cmd = [PYTHON, os.path.join(ROOT, "launcher", "grpo.py"), "--config", os.path.join(ROOT, "configs", config),
           *TINY, *overrides, f"steps={steps}", f"logging.output_dir={os.path.dirname(run_dir)}",
           f"logging.run_name={os.path.basename(run_dir)}"]
    print("$", " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd), flush=True)
    warn_if_busy()
    subprocess.run(cmd, cwd=ROOT, env=ENV, check=True)
    return run_dir


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def floor(steps: list[int], values: list[float]) -> tuple[list[float], list[float]]:
    """The lowest value of each WINDOW steps, at the window's middle step. A trainer's RSS swings by
    ~100 MB within a step (activations freed and handed back to the OS); what a leak raises is the floor."""
    xs, ys = [], []
    for first in range(0, len(steps) - WINDOW + 1, WINDOW):
        xs.append(sum(steps[first:first + WINDOW]) / WINDOW)
        ys.append(min(values[first:first + WINDOW]))
    return xs, ys


def growth(run_dir: str, warmup: int) -> dict:
    """Per role: MB per 100 steps after `warmup` (the slope of the RSS floor), and the floor at warm-up's
    end and at the end."""
    records = [r for r in read_metrics(run_dir) if r["step"] >= warmup and "memory/driver_rss_gb" in r]
    if len(records) < 5 * WINDOW:
        raise SystemExit(f"{run_dir}: {len(records)} steps after warm-up ({warmup}): too few to fit")
    steps = [r["step"] for r in records]
    roles = sorted(k[len("memory/"):-len("_rss_gb")] for k in records[0] if k.endswith("_rss_gb"))
    out = {}
    for role in roles:
        xs, mb = floor(steps, [r[f"memory/{role}_rss_gb"] * 1e3 for r in records])
        out[role] = {"mb_per_100_steps": round(slope(xs, mb) * 100, 2),
                     "rss_mb_at_warmup": round(mb[0]), "rss_mb_at_end": round(mb[-1])}
    sample_ms = [r["timing/memory_s"] * 1e3 for r in records]
    wall = [r["timing/wall_s"] for r in records]
    return {"run_dir": os.path.relpath(run_dir, ROOT), "steps": len(records) + warmup, "warmup": warmup,
            "step_s_mean": round(sum(wall) / len(wall), 2),
            "sample_ms_mean": round(sum(sample_ms) / len(sample_ms), 1), "roles": out}


def table(results: dict) -> str:
    """Markdown: one row per role, one column per kind of run (MB per 100 steps)."""
    kinds = [k for k in KINDS if k in results]
    roles = sorted({role for k in kinds for role in results[k]["roles"]})
    head = ["role", *[f"{k} ({results[k]['steps']} steps)" for k in kinds]]
    rows = [head, ["---"] * len(head)]
    for role in roles:
        cells = []
        for k in kinds:
            r = results[k]["roles"].get(role)
            cells.append(f"{r['mb_per_100_steps']:+.1f} ({r['rss_mb_at_warmup']} MB)" if r else "-")
        rows.append([role, *cells])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--refit", action="store_true", help="fit the runs in leak.json again; run nothing")
    args = parser.parse_args()
    results = json.load(open(OUT)) if os.path.exists(OUT) else {}
    for kind in args.kinds.split(","):
        if args.refit:  # the date and machine of the run
            results[kind].update(growth(os.path.join(ROOT, results[kind]["run_dir"]), args.warmup))
        else:
            run_dir = run(kind, args.steps)
            results[kind] = {**growth(run_dir, args.warmup), "date": time.strftime("%Y-%m-%d"),
                             "machine": machine()}
        os.makedirs(RESULTS, exist_ok=True)
        with open(OUT, "w") as f:
            json.dump(results, f, indent=1)
    print(f"\nMB per 100 steps after step {args.warmup} (RSS at step {args.warmup}); flat: within "
          f"±{FLAT_MB:.0f} MB\n\n{table(results)}")
    grows = [f"{k}/{role}" for k in results for role, r in results[k]["roles"].items()
             if abs(r["mb_per_100_steps"]) > FLAT_MB]
    print("\ngrowing: " + (", ".join(grows) if grows else "none"))


if __name__ == "__main__":
    main()
