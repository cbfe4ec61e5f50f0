"""Table 2: our step time against its limit, bare generate + bare train step of the same batches.

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/overhead.py [--runs 1] [--steps 4] [key=value ...]

Runs the bare pair (bench/bare.py) and our job (bench/run_ours.py), `--runs` times each; the first
step of every run is warm-up and left out. The breakdown puts each of our timed phases next to its
bare counterpart; what no phase times (driver work between phases) is `other`. The bare train step
runs once more beside an idle process holding `--beside-gib` GiB, as the job's other actors do.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile

from common import ENV, PYTHON, ROOT, fmt, run_ours, save, spread

PHASES = ("generate", "reward", "reference", "train", "sync")


def run_bare(steps: int, overrides: list[str], beside_gib: float) -> dict:
    """Bare generate, bare train, and bare train again beside `beside_gib` GiB held by an idle process."""
    tmp = tempfile.mkdtemp(prefix="bare-")
    batches = os.path.join(tmp, "batches.pt")
    result = {}
    for mode, extra in (("generate", []), ("train", []), ("train", ["--beside-gib", str(beside_gib)])):
        out = os.path.join(tmp, f"{mode}{len(extra)}.json")
        cmd = [PYTHON, os.path.join(ROOT, "bench", "bare.py"), mode, "--batches", batches, "--out", out,
               "--steps", str(steps), *extra, *overrides]
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, env=ENV, check=True)
        with open(out) as f:
            part = json.load(f)
        result.update({f"{k}_beside": v for k, v in part.items()} if extra else part)
    return result


def flop_floor(bare: dict, gflops: float) -> float:
    """Seconds a train step needs at the measured matmul rate: 6 x non-embedding parameters x real
    tokens (SmolLM2-135M: 106.2M) + the LM head (576 x 49152) forward and backward on the
    generated tokens only."""
    body = 6 * 106.2e6 * sum(bare["real_tokens"][1:]) / len(bare["real_tokens"][1:])
    head = 6 * 576 * 49152 * sum(bare["generated_tokens"][1:]) / len(bare["generated_tokens"][1:])
    return (body + head) / gflops / 1e9


def ours_summary(steps: list[dict]) -> dict:
    return {
        "wall_s": spread([s["bench/wall_s"] for s in steps]),
        "phases_s": {p: spread([s.get(f"timing/{p}_s", 0.0) for s in steps]) for p in PHASES},
        "other_s": spread([s["bench/wall_s"] - sum(s.get(f"timing/{p}_s", 0.0) for p in PHASES) for s in steps]),
        "generated_tokens": spread([s["bench/generated_tokens"] for s in steps]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--name", default="overhead")
    parser.add_argument("--beside-gib", type=float, default=5.0,
                        help="memory the job's other actors hold while the policy trains (ps: ~5 GiB)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of bench/grpo_bench.yaml, both sides")
    args = parser.parse_intermixed_args()
    ours, bare = [], []
    for i in range(args.runs):
        bare.append(run_bare(args.steps, args.overrides, args.beside_gib))
        ours += run_ours([f"steps={args.steps}", *args.overrides], f"{args.name}-{i}")["steps"][1:]

    gen = spread([t for b in bare for t in b["generate_s"][1:]])
    train = spread([t for b in bare for t in b["train_s"][1:]])
    train_beside = spread([t for b in bare for t in b["train_s_beside"][1:]])
    limit = gen["median"] + train["median"]
    gflops = spread([b["matmul_gflops"] for b in bare])
    summary = ours_summary(ours)
    result = {
        "overrides": args.overrides, "runs": args.runs, "steps_per_run": args.steps,
        "ours": summary, "step_over_limit": summary["wall_s"]["median"] / limit,
        "bare_generate_s": gen, "bare_train_s": train, "limit_s": limit,
        "beside_gib": args.beside_gib, "bare_train_beside_s": train_beside,
        "bare_generated_tokens": spread([t for b in bare for t in b["generated_tokens"][1:]]),
        "bare_real_tokens": spread([t for b in bare for t in b["real_tokens"][1:]]),
        "bare_computed_tokens": spread([t for b in bare for t in b["computed_tokens"][1:]]),
        "bare_padded_tokens": spread([t for b in bare for t in b["padded_tokens"][1:]]),
        "matmul_gflops": gflops,
        "train_flop_floor_s": flop_floor(bare[0], gflops["median"]),
        "raw": {"ours": ours, "bare": bare},
    }
    floor = result["train_flop_floor_s"]
    result.update(bare_train_over_floor=train["median"] / floor,
                  ours_train_over_floor=summary["phases_s"]["train"]["median"] / floor)
    save(args.name, result)
    print(bare[0]["profile_top_ops"])
    print(f"\nbare generate {fmt(gen)} s + bare train {fmt(train)} s = {limit:.1f} s; train FLOP floor "
          f"{floor:.1f} s at {gflops['median']:.0f} GFLOP/s: bare train {result['bare_train_over_floor']:.2f}x, "
          f"ours {result['ours_train_over_floor']:.2f}x")
    tokens = {k: result[f"bare_{k}_tokens"]["median"] for k in ("real", "computed", "padded")}
    print(f"tokens per step: real {tokens['real']:.0f}, computed (packed) {tokens['computed']:.0f}, "
          f"padded (length-sorted micro-batches of train.micro_batch_size, before packing) {tokens['padded']:.0f}")
    print("\n| phase | bare s | r1ray s |\n|---|---:|---:|")
    for p in PHASES:
        base = {"generate": gen, "train": train}.get(p)
        print(f"| {p} | {fmt(base, 2) if base else '–'} | {fmt(summary['phases_s'][p], 2)} |")
    print(f"| other (driver) | – | {fmt(summary['other_s'], 2)} |")
    print(f"| (bare train beside {args.beside_gib:g} GiB held by an idle process) | {fmt(train_beside, 2)} | |")
    print(f"| **step** | {limit:.2f} | {fmt(summary['wall_s'], 2)} |")
    print(f"| **step / (bare generate + bare train)** | 1.00 | {result['step_over_limit']:.2f} |")


if __name__ == "__main__":
    main()
