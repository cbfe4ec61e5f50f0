"""Packed micro-batches against padded ones, and the token budget: our update, interleaved in one process.

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/bare.py generate --steps 4 --batches B.pt --out G.json
    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/packing.py --batches B.pt [--budgets 0 2048 4096 8192]

One DeepSpeed ZeRO-2 engine (bench/grpo_bench.yaml's) updates on each generated batch after the first
(warm-up) with grpo_update at every `train.max_tokens_per_microbatch` in `--budgets` (0: packed groups
of `train.micro_batch_size` sequences) and with the padded baseline: what the update did before
packing, micro-batches of `train.micro_batch_size` sequences cut from the length-sorted batch, padded
to their longest, the LM head from the earliest generated token of the micro-batch on. Modes take
turns on every batch, `--repeats` times, so the machine's drift falls on all of them alike.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from common import BENCH_CONFIG, save, single_rank_engine, spread, update_minibatch

from system.algorithms.losses import policy_loss
from system.config.grpo import load_config
from system.training.grpo import grpo_update
from system.training.logprobs import SelectedLogprobs, pad_sequences
from system.training.packing import loss_span, micro_batches
from system.training.samples import TrainingSample


def padded_update(engine, minibatch: list[TrainingSample], algo, micro_batch: int) -> None:
    """The update before packing, for comparison: padded rows and an attention mask."""
    groups = micro_batches(minibatch, micro_batch)
    for g, mb in enumerate(groups):
        engine.set_gradient_accumulation_boundary(g == len(groups) - 1)
        b = pad_sequences(mb, ["tokens", "weights", "ref_logp"], 0, engine.device)
        start = min(loss_span(s)[0] for s in mb)
        keep = b["tokens"].shape[1] - start + 1
        logits = engine(input_ids=b["tokens"], attention_mask=b["attention_mask"], use_cache=False,
                        logits_to_keep=keep).logits
        targets = torch.nn.functional.pad(b["tokens"][:, start:], (0, 1))
        logp, entropy = SelectedLogprobs.apply(logits.flatten(0, 1), targets.flatten(), 1.0, True)
        logp, entropy = (torch.nn.functional.pad(x.view(len(mb), keep)[:, :-1], (start, 0)) for x in (logp, entropy))
        loss, _ = policy_loss(logp, logp.detach(), torch.tensor([s.advantage for s in mb]), b["weights"],
                              algo.eps_low, algo.eps_high, ref_logp=b["ref_logp"], kl_coef=algo.kl_coef,
                              entropy=entropy)
        engine.backward(loss, scale_wrt_gas=False)
        engine.step()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", required=True, help="bench/bare.py generate's --batches")
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 2048, 4096, 8192])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    cfg = load_config(BENCH_CONFIG, args.overrides)
    t = cfg.train
    engine, _ = single_rank_engine(cfg)
    rng = random.Random(0)

    def update(batch, mode) -> float:
        minibatch = update_minibatch(batch, cfg, rng)
        start = time.perf_counter()
        if mode == "padded":
            padded_update(engine, minibatch, cfg.algorithm, t.micro_batch_size)
        else:
            grpo_update(engine, [minibatch], cfg.algorithm, max_tokens=mode, micro_batch=t.micro_batch_size,
                        ppo_epochs=1, temperature=cfg.rollout.temperature, world_size=1)
        return time.perf_counter() - start

    first, *batches = torch.load(args.batches)
    modes = ["padded", *args.budgets]
    for mode in modes:
        update(first, mode)  # warm-up
    times: dict[str, list[float]] = {str(m): [] for m in modes}
    for repeat in range(args.repeats):
        for i, batch in enumerate(batches):
            for mode in modes:
                times[str(mode)].append(update(batch, mode))
                print(f"repeat {repeat} batch {i} {mode}: {times[str(mode)][-1]:.2f} s", flush=True)
    result = {"budgets": args.budgets, "repeats": args.repeats, "train_s": {m: spread(v) for m, v in times.items()},
              "raw": times}
    save("packing", result)
    base = result["train_s"]["padded"]["median"]
    print("\n| micro-batches | update s | vs padded |\n|---|---:|---:|")
    for m, s in result["train_s"].items():
        print(f"| {m} | {s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f}) | {s['median'] / base:.2f} |")


if __name__ == "__main__":
    main()
