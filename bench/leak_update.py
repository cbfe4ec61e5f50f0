"""Where a trainer's RSS floor goes up over a long run (docs/reliability.md, "Memory"): the policy
update alone, in this process (no Ray, no weight sync), on the tiny model, its RSS read after a
`malloc_trim` once per update, as the per-step memory call does. `--batches new` gives every update
a new batch of random prompt lengths (so new tensor shapes), `same` the same batch each time: a
leak grows under both, a cache keyed by shapes only under `new`, and only until it is full.

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/leak_update.py --batches new --updates 300

Prints the lowest RSS of every 25 updates and the mean seconds per update so far. Set
ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 to see what oneDNN's primitive cache holds.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import ROOT, single_rank_engine, update_minibatch  # noqa: E402

from actors.memory import rss_gb, trim  # noqa: E402
from system.config.grpo import load_config  # noqa: E402
from system.training.grpo import grpo_update  # noqa: E402

WINDOW = 25


def random_batch(rng: random.Random, prompts: int = 4, group: int = 4, reply: int = 16) -> list:
    """(prompt, completion) token pairs: `prompts` groups of `group` replies to one prompt of 60-99 tokens."""
    def tokens(n: int) -> list[int]:
        return [rng.randrange(1000, 40_000) for _ in range(n)]

    out = []
    for _ in range(prompts):
        prompt = tokens(rng.randrange(60, 100))
        out += [(prompt, tokens(reply)) for _ in range(group)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", choices=("new", "same"), default="new")
    parser.add_argument("--updates", type=int, default=300)
    args = parser.parse_args()
    cfg = load_config(os.path.join(ROOT, "configs", "grpo_countdown_cpu.yaml"), [
        "model.path=tiny", "prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=16"])
    engine, _ = single_rank_engine(cfg, share_prefixes=cfg.train.share_prefixes)
    rng, t = random.Random(0), cfg.train
    fixed = random_batch(rng)
    floors, began = [], time.perf_counter()
    for i in range(args.updates):
        batch = fixed if args.batches == "same" else random_batch(rng)
        grpo_update(engine, [update_minibatch(batch, cfg, rng)], cfg.algorithm, max_tokens=t.max_tokens_per_microbatch,
                    micro_batch=t.micro_batch_size, ppo_epochs=1, temperature=cfg.rollout.temperature, world_size=1,
                    share_prefixes=t.share_prefixes)
        trim()
        floors.append(rss_gb() * 1e3)
        if (i + 1) % WINDOW == 0:
            per_update = (time.perf_counter() - began) / (i + 1)
            print(f"{args.batches} batches, updates {i + 2 - WINDOW}-{i + 1}: RSS floor "
                  f"{min(floors[-WINDOW:]):.0f} MB, {per_update:.2f} s per update", flush=True)


if __name__ == "__main__":
    main()
