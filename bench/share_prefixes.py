"""Shared prefixes computed once against every sequence whole: the policy update and the reference forward,
interleaved in one process on the same generated batches.

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/bare.py generate --steps 4 --batches B.pt --out G.json [k=v ...]
    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/share_prefixes.py --batches B.pt [k=v ...]

One DeepSpeed engine (bench/grpo_bench.yaml's, with the same overrides as the generation) runs, on each
batch after the first (warm-up), grpo_update (what the policy actor runs) and compute_logprobs without
gradients (what the reference actor runs), with `train.share_prefixes` off and on in turn, `--repeats`
times, so the machine's drift falls on both alike. lr 0: every update starts from the same weights.
Reports the update's and the reference's seconds, their ratio, the tokens computed and represented, and
the update against its FLOP floor: 6 x non-embedding parameters x tokens computed, plus the LM head on
the generated tokens (forward and backward), at the matmul rate measured in the run.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from bare import matmul_gflops
from common import BENCH_CONFIG, fmt, save, single_rank_engine, spread, update_minibatch

from system.config.grpo import load_config
from system.training.grpo import grpo_update
from system.training.logprobs import compute_logprobs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", required=True, help="bench/bare.py generate's --batches")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--name", default="share_prefixes", help="the result's name in bench/results")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    cfg = load_config(BENCH_CONFIG, [*args.overrides, "train.lr=0"])
    t = cfg.train
    engine, dtype = single_rank_engine(cfg, share_prefixes=True)
    model = engine.module
    params = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)
    head = model.config.hidden_size * model.config.vocab_size
    rng = random.Random(0)

    def run(batch, share: bool) -> dict:
        minibatch = update_minibatch(batch, cfg, rng)
        start = time.perf_counter()
        totals = grpo_update(engine, [minibatch], cfg.algorithm, max_tokens=t.max_tokens_per_microbatch,
                             micro_batch=t.micro_batch_size, ppo_epochs=1, temperature=cfg.rollout.temperature,
                             world_size=1, share_prefixes=share)
        update_s = time.perf_counter() - start
        engine.eval()
        start = time.perf_counter()
        compute_logprobs(engine, minibatch, cfg.rollout.temperature, max_tokens=t.max_tokens_per_microbatch,
                         micro_batch=cfg.reference.micro_batch_size, share_prefixes=share)
        generated = sum(len(c) for _, c in batch)
        return {"update_s": update_s, "reference_s": time.perf_counter() - start,
                "computed": totals["tokens_computed"], "total": totals["tokens_total"],
                "floor_flops": 6 * params * totals["tokens_computed"] + 6 * head * generated}

    first, *batches = torch.load(args.batches)
    for share in (False, True):
        run(first, share)  # warm-up
    runs: dict[str, list[dict]] = {"unshared": [], "shared": []}
    gflops = []
    for repeat in range(args.repeats):
        for i, batch in enumerate(batches):
            for name, share in (("unshared", False), ("shared", True)):
                runs[name].append(run(batch, share))
                r = runs[name][-1]
                print(f"repeat {repeat} batch {i} {name}: update {r['update_s']:.2f} s, reference "
                      f"{r['reference_s']:.2f} s, tokens {r['computed']:.0f} of {r['total']:.0f}", flush=True)
            gflops.append(matmul_gflops(getattr(torch, dtype)))
    rate = spread(gflops)["median"] * 1e9
    summary = {name: {"update_s": spread([r["update_s"] for r in rs]),
                      "reference_s": spread([r["reference_s"] for r in rs]),
                      "tokens_computed": sum(r["computed"] for r in rs) / len(rs),
                      "tokens_total": sum(r["total"] for r in rs) / len(rs),
                      "update_x_floor": spread([r["update_s"] * rate / r["floor_flops"] for r in rs])}
               for name, rs in runs.items()}
    save(args.name, {"overrides": args.overrides, "repeats": args.repeats, "matmul_gflops": spread(gflops),
                     "summary": summary, "raw": runs})
    print("\n| prefixes | update s | reference s | tokens computed / total | update x FLOP floor |")
    print("|---|---:|---:|---:|---:|")
    for name, s in summary.items():
        print(f"| {name} | {fmt(s['update_s'], 2)} | {fmt(s['reference_s'], 2)} | "
              f"{s['tokens_computed']:.0f} / {s['tokens_total']:.0f} | {fmt(s['update_x_floor'], 2)} |")
    base, shared = summary["unshared"], summary["shared"]
    print(f"update {base['update_s']['median'] / shared['update_s']['median']:.2f}x faster shared, reference "
          f"{base['reference_s']['median'] / shared['reference_s']['median']:.2f}x; matmul {fmt(spread(gflops), 0)} "
          "GFLOP/s")


if __name__ == "__main__":
    main()
