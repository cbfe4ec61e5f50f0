"""Single-turn rollout (one prompt -> one completion), orchestrated from the driver:
the engines sample a group per prompt, the reward pool scores every completion."""

from __future__ import annotations

import ray

from system.data.prompts import encode_prompt
from system.metrics import timed
from system.rewards import combine_rewards
from system.rollout.sequences import Rollouts


def generate(engines: list, prompts: list[list[int]], cfg, seed: int, n: int, temperature: float) -> list[list[dict]]:
    """Each engine samples `n` completions for a contiguous slice of the prompts (cfg: RolloutConfig)."""
    k = len(engines)
    bounds = [len(prompts) * i // k for i in range(k + 1)]
    futures = [
        engine.generate.remote(prompts[a:b], n, temperature, cfg.top_p, cfg.max_new_tokens,
                               [seed + i for i in range(a, b)], cfg.stop)
        for engine, a, b in zip(engines, bounds, bounds[1:]) if b > a
    ]
    return [group for part in ray.get(futures) for group in part]


def single_turn_rollout(rows: list[dict], engines: list, reward_pool, tokenizer, cfg, seed: int, timings: dict,
                        n: int, temperature: float) -> Rollouts:
    """`n` samples per row (contiguous), scored by every configured reward function."""
    prefix = cfg.data.response_prefix
    prompts = [encode_prompt(tokenizer, row["messages"], prefix, cfg.data.prompt_format) for row in rows]
    with timed(timings, "generate"):
        groups = generate(engines, prompts, cfg.rollout, seed, n, temperature)
    samples = [(p, s) for p, group in zip(prompts, groups) for s in group]
    texts = [prefix + s["text"] for _, s in samples]  # the whole reply, as rewards must judge it
    with timed(timings, "reward"):
        columns = {key: [row[key] for row in rows for _ in range(n)] for key in rows[0] if key != "messages"}
        columns["completion_tokens"] = [len(s["response"]) for _, s in samples]  # for length-shaped rewards
        scores = reward_pool.score(texts, columns, n)
        total = combine_rewards(scores, cfg.reward.functions, cfg.reward.mode, cfg.reward.gate)
    return Rollouts(
        tokens=[p + s["response"] for p, s in samples],
        loss_mask=[[0] * len(p) + [1] * len(s["response"]) for p, s in samples],
        logprobs=[[0.0] * len(p) + s["logprobs"] for p, s in samples],
        rewards=total,
        scores=scores,
        finish_reasons=[s["finish_reason"] for _, s in samples],
        texts=texts,
    )
