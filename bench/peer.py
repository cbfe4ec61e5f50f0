"""Table 1: the same GRPO job run by r1ray and by TRL's GRPOTrainer, alternating, `--runs` each.

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/peer.py [--runs 3] [--steps 3]

Per step (the first, warm-up step of every run left out): wall time and generated tokens per
second of wall time. The ratio is taken run pair by run pair (each run's median step), so a
slow moment of the machine shows up as spread instead of hiding in one number.
"""

from __future__ import annotations

import argparse
import statistics

from common import fmt, run_ours, run_trl, save, spread

OUR_PHASES = ("generate", "reward", "reference", "train", "sync")


def our_steps(run: dict) -> list[dict]:
    return [{"wall_s": s["bench/wall_s"], "generated_tokens": s["bench/generated_tokens"],
             **{f"{p}_s": s.get(f"timing/{p}_s", 0.0) for p in OUR_PHASES}} for s in run["steps"][1:]]


def summary(steps: list[dict]) -> dict:
    return {
        "wall_s": spread([s["wall_s"] for s in steps]),
        "tokens_per_s": spread([s["generated_tokens"] / s["wall_s"] for s in steps]),
        "generated_tokens": spread([s["generated_tokens"] for s in steps]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    ours, trl = [], []
    for i in range(args.runs):
        run = run_ours([f"steps={args.steps}"], f"peer-ours-{i}")
        ours.append({"startup_s": run["startup_s"], "steps": our_steps(run)})
        run = run_trl(["--steps", str(args.steps)], f"peer-trl-{i}")
        trl.append({**run, "steps": run["steps"][1:]})

    def run_median(run: dict, key: str) -> float:
        return statistics.median(s[key] if key == "wall_s" else s["generated_tokens"] / s["wall_s"]
                                 for s in run["steps"])

    result = {
        "runs": args.runs, "steps_per_run": args.steps,
        "ours": {**summary([s for r in ours for s in r["steps"]]),
                 "startup_s": spread([r["startup_s"] for r in ours]),
                 "phases_s": {p: spread([s[f"{p}_s"] for r in ours for s in r["steps"]]) for p in OUR_PHASES}},
        "trl": {**summary([s for r in trl for s in r["steps"]]),
                "startup_s": spread([r["startup_s"] for r in trl]),
                "phases_s": {p: spread([s[p] for r in trl for s in r["steps"]])
                             for p in ("generate_s", "reference_reward_s", "train_s")},
                "settings": {k: trl[0][k] for k in ("gradient_checkpointing", "bf16", "model_dtype", "use_vllm")}},
        "speedup_step_time": spread([run_median(t, "wall_s") / run_median(o, "wall_s") for o, t in zip(ours, trl)]),
        "speedup_tokens_per_s": spread([run_median(o, "tok") / run_median(t, "tok") for o, t in zip(ours, trl)]),
        "raw": {"ours": ours, "trl": trl},
    }
    save("peer_trl", result)
    o, t = result["ours"], result["trl"]
    print("\n| | wall s/step | generated tokens/s | tokens/step | start-up s |\n|---|---:|---:|---:|---:|")
    for name, r in (("r1ray", o), ("TRL GRPOTrainer", t)):
        print(f"| {name} | {fmt(r['wall_s'])} | {fmt(r['tokens_per_s'])} | {fmt(r['generated_tokens'], 0)} "
              f"| {fmt(r['startup_s'], 0)} |")
    print(f"| **r1ray / TRL** | {fmt(result['speedup_step_time'], 2)}x faster | "
          f"{fmt(result['speedup_tokens_per_s'], 2)}x | | |")


if __name__ == "__main__":
    main()
