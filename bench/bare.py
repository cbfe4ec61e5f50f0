"""The limit our step is measured against: the same batches through a bare vLLM engine and a bare
DeepSpeed train step, each in a process of its own, no Ray, no actors, nothing else running.

    .venv/bin/python bench/bare.py generate --steps 5 --batches B.pt --out G.json [key=value ...]
    .venv/bin/python bench/bare.py train --batches B.pt --out T.json [key=value ...]

`generate`: vllm.LLM in-process with our engine's arguments (actors/vllm_engine.py, system/platform.py),
the prompts and per-prompt seeds our job uses at steps 0..N-1 (so step 0 samples exactly what our
engine samples); times `llm.generate` of each step's batch and saves the sequences.
`train`: system/training/engines.py's DeepSpeed engine, then per batch the least a policy-gradient step
does: packed micro-batches of at most `train.max_tokens_per_microbatch` tokens (system/training/packing.py,
as ours: no padding), one forward with the textbook log-softmax (LM head on the generated tokens
only), a token-mean surrogate, backward, optimizer step; then one more step under torch's profiler
(its top operators go into the result). `--step ours`: the same batches through our grpo_update
instead (what the policy actor runs, minus Ray). Tokens counted: real, computed (what the packed
micro-batches feed the model) and padded (what length-sorted micro-batches of `train.micro_batch_size`
padded to their longest would: the layout before packing).
`--beside-gib N`: train while another, idle process holds N GiB (as the job's other actors do).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import subprocess
import sys
import time

import torch
from common import BENCH_CONFIG

from system.config.grpo import load_config
from system.models import resolve_model
from system.platform import current_platform
from system.training.packing import loss_span, micro_batches, pack
from system.training.samples import TrainingSample


def bare_generate(cfg, steps: int, batches_path: str) -> dict:
    from transformers import AutoTokenizer

    from system.data import load_splits
    from system.data.prompts import encode_chat
    from system.data.sampler import PromptSampler

    platform = current_platform()
    os.environ.update(platform.vllm_env(cfg.rollout.cpu_kv_cache_gib, platform.num_threads(0)))
    from vllm import LLM, SamplingParams, TokensPrompt

    model_path = resolve_model(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    r = cfg.rollout
    llm = LLM(model=model_path, dtype=platform.model_dtype(cfg.model.dtype), seed=cfg.seed, tensor_parallel_size=1,
              distributed_executor_backend="uni", max_model_len=r.max_model_len,
              enable_prefix_caching=r.enable_prefix_caching, logprobs_mode="processed_logprobs",
              **platform.vllm_kwargs(r.gpu_memory_utilization))
    sampler = PromptSampler(load_splits(cfg.data)[0], cfg.prompts_per_step, cfg.seed)
    times, tokens, batches = [], [], []
    for step in range(steps):
        seed = (cfg.seed * 100_003 + step) * 10_007  # as launcher/grpo.py seeds step `step`
        prompts = [encode_chat(tokenizer, row["messages"], cfg.data.response_prefix) for row in sampler.next_batch()]
        params = [SamplingParams(n=r.group_size, temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_new_tokens,
                                 logprobs=0, seed=seed + i, stop=r.stop or None, include_stop_str_in_output=True)
                  for i in range(len(prompts))]
        start = time.perf_counter()
        outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        times.append(time.perf_counter() - start)
        batch = [(p, list(c.token_ids)) for p, out in zip(prompts, outputs) for c in out.outputs]
        tokens.append(sum(len(c) for _, c in batch))
        batches.append(batch)
    torch.save(batches, batches_path)
    return {"generate_s": times, "generated_tokens": tokens}


def bare_train(cfg, batches_path: str, step: str = "minimal") -> dict:
    from system.training.engines import init_train_engine

    platform = current_platform()
    platform.set_threads(platform.num_threads(cfg.placement.threads_per_actor))  # as our policy actor does
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29_500 + os.getpid() % 1000), RANK="0",
                      WORLD_SIZE="1", LOCAL_RANK="0")
    import deepspeed

    deepspeed.init_distributed(dist_backend=platform.dist_backend)
    t = cfg.train
    samples = cfg.prompts_per_step * cfg.rollout.group_size
    dtype = platform.model_dtype(cfg.model.dtype)
    engine = init_train_engine(resolve_model(cfg.model.path), t, dtype, -(-samples // t.micro_batch_size), 1,
                               platform, platform.attn_implementation(dtype, t.share_prefixes))
    engine.train()
    rng = random.Random(0)
    times, tokens = [], []
    batches = [[TrainingSample.from_rollout(p + c, [0] * len(p) + [1] * len(c), [0.0] * len(p) + [-1.0] * len(c))
                for p, c in batch] for batch in torch.load(batches_path)]
    train_step = minimal_step if step == "minimal" else functools.partial(our_update, cfg)
    for batch in batches:
        start = time.perf_counter()
        train_step(engine, batch, t, cfg.rollout.temperature, rng)
        times.append(time.perf_counter() - start)
        tokens.append(count_tokens(batch, t.micro_batch_size))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        train_step(engine, batches[-1], t, cfg.rollout.temperature, rng)
    top = profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)
    return {"train_s": times, **{f"{k}_tokens": [n[k] for n in tokens] for k in ("real", "computed", "padded")},
            "matmul_gflops": matmul_gflops(getattr(torch, dtype)), "profile_top_ops": top}


def count_tokens(batch: list[TrainingSample], micro_batch: int) -> dict[str, int]:
    """Real tokens; what packing computes (each sequence up to its last loss token); and what
    length-sorted micro-batches of `micro_batch` sequences padded to their longest computed before."""
    padded = sum(max(len(s.tokens) for s in mb) * len(mb) for mb in micro_batches(batch, micro_batch))
    return {"real": sum(len(s.tokens) for s in batch), "computed": sum(loss_span(s)[1] for s in batch),
            "padded": padded}


def our_update(cfg, engine, batch: list[TrainingSample], t, temperature: float, rng: random.Random) -> None:
    """The same step through our own update code (system/training/grpo.py's grpo_update, as the policy actor
    runs it), without Ray: tells the cost of our update code from the cost of running in an actor."""
    from system.training.grpo import grpo_update
    from system.training.samples import split_for_training

    for s in batch:
        s.advantage = rng.choice((-1.0, 1.0))
        if cfg.algorithm.kl_coef > 0:
            s.ref_logp = s.rollout_logp.clone()
    [shard] = split_for_training(batch, cfg.train.num_minibatches, 1, cfg.algorithm.loss_agg,
                                 cfg.rollout.max_new_tokens, seed=0)
    grpo_update(engine, shard, cfg.algorithm, max_tokens=t.max_tokens_per_microbatch, micro_batch=t.micro_batch_size,
                ppo_epochs=t.ppo_epochs, temperature=temperature, world_size=1, share_prefixes=t.share_prefixes)


def minimal_step(engine, batch: list[TrainingSample], t, temperature: float, rng: random.Random) -> None:
    """One optimizer step over `batch` in packed micro-batches (as ours; t: TrainConfig), the log-probs as
    a plain training script computes them: log-softmax of the tempered fp32 logits of the generated
    tokens, gather."""
    from system.training.packing import micro_batch_groups

    loss_tokens = sum(float(s.loss_mask.sum()) for s in batch)
    groups = micro_batch_groups(batch, t.max_tokens_per_microbatch, t.micro_batch_size, engine.device)
    for g, group in enumerate(groups):
        engine.set_gradient_accumulation_boundary(g == len(groups) - 1)
        packed = pack([batch[i] for i in group], engine.device)
        logits = engine(**packed.model_kwargs(), logits_to_keep=packed.keep).logits[0]
        logp = torch.log_softmax(logits.float() / temperature, -1).gather(-1, packed.targets[:, None]).squeeze(-1)
        advantages = torch.tensor([rng.choice((-1.0, 1.0)) for _ in group])[packed.rows]
        engine.backward(-(logp * advantages).sum() / loss_tokens, scale_wrt_gas=False)
        engine.step()


@contextlib.contextmanager
def memory_held_elsewhere(gib: float):
    """Another process holding `gib` GiB of touched memory and doing nothing else, as the job's idle
    engine, reference and reward actors do while the policy trains."""
    if gib <= 0:
        yield
        return
    code = f"import torch, time; x = torch.ones({int(gib * 2**28)}); print('held', flush=True); time.sleep(10**6)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()  # the memory is touched
    try:
        yield
    finally:
        holder.kill()


def matmul_gflops(dtype: torch.dtype, repeats: int = 20) -> float:
    """The CPU's matmul rate in the model's dtype at its MLP shape (tokens x 576 @ 576 x 1536): the
    rate a FLOP-count floor of the training step divides by."""
    a, b = torch.randn(2048, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * 2048 * 576 * 1536 * repeats / (time.perf_counter() - start) / 1e9


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("generate", "train"))
    parser.add_argument("--batches", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--step", choices=("minimal", "ours"), default="minimal",
                        help="train: the least a step does, or our grpo_update (system/training/grpo.py)")
    parser.add_argument("--beside-gib", type=float, default=0.0,
                        help="train: with another process holding this much memory (idle) meanwhile")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    config = load_config(BENCH_CONFIG, args.overrides)
    if args.mode == "generate":
        result = bare_generate(config, args.steps, args.batches)
    else:
        with memory_held_elsewhere(args.beside_gib):
            result = bare_train(config, args.batches, args.step)
    with open(args.out, "w") as f:
        json.dump(result, f)
