"""Table 4: generation throughput against rollout engines and group size; step time against
response length.

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/scaling.py [--repeats 2] [--steps 3]

Part 1 (engines x group size): our generation path only (VLLMEngine actors, the driver's split of
the prompts over them: actors/vllm_engine.py's EnginePool), 8 prompts x group size, 128 new tokens, over
`--repeats` batches of prompts (the same for every group size) after a small warm-up batch.
Part 2 (response length): our whole job (bench/grpo_bench.yaml, as in tables 1 and 2) at 32 / 64 /
128 new tokens; the engines cannot be told to ignore EOS, so the table shows how many samples the limit
cut (clipped: length = the limit).
"""

from __future__ import annotations

import argparse
import time

from common import BENCH_CONFIG, fmt, run_ours, save, spread, warn_if_busy

from system.config.grpo import load_config


def generation_scaling(engine_counts: list[int], group_sizes: list[int], repeats: int) -> list[dict]:
    import ray
    from transformers import AutoTokenizer

    from actors.cluster import start_ray
    from actors.placement import Placement
    from actors.vllm_engine import EnginePool
    from system.data import load_splits
    from system.data.prompts import encode_chat
    from system.data.sampler import PromptSampler
    from system.models import resolve_model
    from system.platform import CPU

    rows = []
    warn_if_busy()
    for k in engine_counts:
        cfg = load_config(BENCH_CONFIG, ["algorithm.kl_coef=0", f"rollout.num_engines={k}"])
        model_path = resolve_model(cfg.model.path)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        start_ray("", Placement.logical_cpus(cfg.roles(), cfg.placement))
        placement = Placement(cfg.roles(), cfg.placement, CPU)
        engines = EnginePool(cfg, placement, model_path)
        sampler = PromptSampler(load_splits(cfg.data)[0], cfg.prompts_per_step, cfg.seed)
        batches = [[encode_chat(tokenizer, r["messages"]) for r in sampler.next_batch()] for _ in range(repeats)]
        engines.generate(batches[0][:k], 2, 1.0, seed=0)  # warm-up
        for n in group_sizes:
            times, tokens = [], []
            for repeat, prompts in enumerate(batches):  # the same prompts for every group size
                start = time.perf_counter()
                groups = engines.generate(prompts, n, 1.0, seed=repeat)
                times.append(time.perf_counter() - start)
                tokens.append(sum(len(s["response"]) for g in groups for s in g))
            rows.append({"engines": k, "group_size": n, "samples": len(prompts) * n,
                         "generate_s": spread(times), "tokens": spread(tokens),
                         "tokens_per_s": spread([t / s for t, s in zip(tokens, times)])})
            print(f"{k} engine(s), group {n}: {fmt(rows[-1]['tokens_per_s'], 0)} tokens/s", flush=True)
        warn_if_busy()
        for engine in engines.engines:
            ray.kill(engine)
        placement.remove()
        ray.shutdown()
    return rows


def length_scaling(lengths: list[int], steps: int) -> list[dict]:
    rows = []
    for length in lengths:
        run = run_ours([f"rollout.max_new_tokens={length}", f"steps={steps}"], f"length-{length}")
        measured = run["steps"][1:]
        rows.append({
            "max_new_tokens": length,
            "wall_s": spread([s["bench/wall_s"] for s in measured]),
            "length_mean": spread([s["response/length_mean"] for s in measured]),
            "clipped_frac": spread([s["response/clipped_frac"] for s in measured]),
            **{f"{p}_s": spread([s[f"timing/{p}_s"] for s in measured])
               for p in ("generate", "reference", "train", "sync")},
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--engines", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--group-sizes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128])
    args = parser.parse_args()
    generation = generation_scaling(args.engines, args.group_sizes, args.repeats)
    lengths = length_scaling(args.lengths, args.steps)
    save("scaling", {"generation": generation, "length": lengths})
    print("\n| engines | group size | samples | tokens/batch | generate s | tokens/s |\n"
          "|---:|---:|---:|---:|---:|---:|")
    for r in generation:
        print(f"| {r['engines']} | {r['group_size']} | {r['samples']} | {fmt(r['tokens'], 0)} | {fmt(r['generate_s'])} "
              f"| {fmt(r['tokens_per_s'], 0)} |")
    print("\n| max new tokens | mean length | clipped | step s | generate s | reference s | train s | sync s |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in lengths:
        print(f"| {r['max_new_tokens']} | {fmt(r['length_mean'], 0)} | {fmt(r['clipped_frac'], 2)} "
              f"| {fmt(r['wall_s'])} "
              f"| {fmt(r['generate_s'])} | {fmt(r['reference_s'])} | {fmt(r['train_s'])} | {fmt(r['sync_s'], 2)} |")


if __name__ == "__main__":
    main()
