"""Table 5: asynchronous GRPO, rollouts overlapping the updates (schedule.max_staleness = k).

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/overlap.py [--steps 5]

Disaggregated layout on this 2-core machine, the way separate GPUs are separate: every actor one
torch thread (placement.threads_per_actor=1), so the engine works on one core while the policy
(and the reference) take turns on the other. Two jobs: table 1's (bench/grpo_bench.yaml,
training-heavy; k = 0 and 1), two lighter ones without a reference (16 samples of up to 96 tokens,
8 of up to 256: still training-heavy here) and a balanced one (4 samples of up to 384 tokens: the
engine generates about as long as the trainer updates in this layout); k = 0, 1, 2, and 1 with the
load waiting for the generation in flight (partial_rollout=false): median step wall time (the first step left out),
generated tokens per second of wall time, each role's idle fraction, and the bound overlap can reach,
max(generate, trainer busy) of the k = 0 run's steps.
"""

from __future__ import annotations

import argparse

from common import fmt, load, run_ours, save, spread

LAYOUT = ["placement.threads_per_actor=1"]
JOBS = {
    "table1": [],
    "short": ["algorithm.kl_coef=0", "prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=96"],
    "medium": ["algorithm.kl_coef=0", "prompts_per_step=2", "rollout.group_size=4", "rollout.max_new_tokens=256"],
    "balanced": ["algorithm.kl_coef=0", "prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=384"],
}
SCHEDULES = {  # (k, partial rollouts); table 1's job is long, so only k = 0 and 1 there
    "table1": [(0, True), (1, True)],
    "short": [(0, True), (1, True), (2, True), (1, False)],
    "medium": [(0, True), (1, True), (2, True), (1, False)],
    "balanced": [(0, True), (1, True), (2, True), (1, False)],
}
TRAINER = ("reference", "train", "sync")


def measure(job: str, k: int, partial: bool, steps: int) -> dict:
    run = run_ours(LAYOUT + JOBS[job] + [f"schedule.max_staleness={k}", f"schedule.partial_rollout={partial}",
                                         f"steps={steps}"], f"overlap-{job}-k{k}{'' if partial else '-whole'}")
    measured = run["steps"][1:]
    return {
        "wall_s": spread([s["timing/wall_s"] for s in measured]),
        "tokens_per_s": spread([s["bench/generated_tokens"] / s["timing/wall_s"] for s in measured]),
        "engine_idle": spread([s["timing/engine_idle_frac"] for s in measured]),
        "trainer_idle": spread([s["timing/trainer_idle_frac"] for s in measured]),
        "generate_s": spread([s["timing/generate_s"] for s in measured]),
        "trainer_busy_s": spread([sum(s.get(f"timing/{p}_s", 0.0) for p in TRAINER) for s in measured]),
        "staleness_max": max((s.get("async/staleness_max", 0) for s in measured), default=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--jobs", nargs="+", default=list(JOBS))
    args = parser.parse_args()
    result = load("overlap")  # the jobs not run this time keep their last figures
    for job in args.jobs:
        rows = {f"k={k}{'' if partial else ' whole'}": measure(job, k, partial, args.steps)
                for k, partial in SCHEDULES[job]}
        sync = rows["k=0"]
        bound = max(sync["generate_s"]["median"], sync["trainer_busy_s"]["median"])
        result[job] = {"rows": rows, "bound_s": bound}
        print(f"\n{job}: max(generate {sync['generate_s']['median']:.1f} s, "
              f"trainer {sync['trainer_busy_s']['median']:.1f} s) = {bound:.1f} s")
        print("| schedule | step wall s | vs bound | tokens/s | vs k=0 | engine idle | trainer idle | staleness max |")
        for name, r in rows.items():
            print(f"| {name} | {fmt(r['wall_s'])} | {r['wall_s']['median'] / bound:.2f}x | "
                  f"{fmt(r['tokens_per_s'], 0)} | "
                  f"{r['tokens_per_s']['median'] / sync['tokens_per_s']['median']:.2f}x | {fmt(r['engine_idle'], 2)} | "
                  f"{fmt(r['trainer_idle'], 2)} | {r['staleness_max']} |", flush=True)
    save("overlap", result)


if __name__ == "__main__":
    main()
