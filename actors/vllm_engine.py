"""vLLM engine actors, and the pool that fans a batch of prompts out over them.

Token in, token out: prompts arrive as token ids and samples leave as token ids with the
sampling log-probs of every generated token, so the trainer scores exactly what was sampled.
Each engine also receives new weights (its workers run actors/vllm_worker.py).
"""

from __future__ import annotations

import os

import ray

from system.platform import current_platform


@ray.remote
class VLLMEngine:
    def __init__(self, model_path: str, cfg, seed: int, dtype: str, threads: int):
        """`threads`: torch threads of the engine on CPU (see Platform.num_threads)."""
        platform = current_platform()
        os.environ.update(platform.vllm_env(cfg.cpu_kv_cache_gib, threads))
        platform.set_threads(threads)  # before the engine starts: vLLM's CPU worker then forbids changing it
        from vllm import LLM

        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            seed=seed,
            tensor_parallel_size=cfg.tensor_parallel_size,
            distributed_executor_backend="uni" if cfg.tensor_parallel_size == 1 else "ray",
            max_model_len=cfg.max_model_len,
            enable_prefix_caching=cfg.enable_prefix_caching,
            # log-probs after temperature scaling: what the sampler really drew from
            logprobs_mode="processed_logprobs",
            worker_extension_cls="actors.vllm_worker.WeightSyncWorker",
            **platform.vllm_kwargs(cfg.gpu_memory_utilization),
        )
        self.version = 0  # the policy version of the weights served: updates done when they were sent

    def generate(self, prompts: list[list[int]], n: int, temperature: float, top_p: float, max_tokens: int,
                 seeds: list[int], stop: list[str] | None = None) -> list[list[dict]]:
        """For each prompt, `n` samples: {"response": ids, "logprobs": floats, "finish_reason", "text",
        "version": the policy version that sampled them}."""
        from vllm import SamplingParams, TokensPrompt

        params = [
            SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, logprobs=0, seed=seed,
                           stop=stop or None, include_stop_str_in_output=True)
            for seed in seeds
        ]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        return [
            [
                {
                    "response": list(c.token_ids),
                    "logprobs": [step[token].logprob for step, token in zip(c.logprobs, c.token_ids)],
                    "finish_reason": c.finish_reason,
                    "text": c.text,
                    "version": self.version,
                }
                for c in out.outputs
            ]
            for out in outputs
        ]

    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str) -> list[int]:
        return self.llm.collective_rpc("init_weight_sync", args=(host, port, rank_offset, world_size, backend))

    def receive_weights(self, buckets: list[list[dict]], verify: bool, version: int) -> list[int]:
        per_worker = self.llm.collective_rpc("receive_weights", args=(buckets, verify))
        if any(sums != per_worker[0] for sums in per_worker):
            raise RuntimeError("tensor-parallel workers received different bytes")
        self.llm.reset_prefix_cache()  # KV computed with the old weights must not be reused
        self.version = version
        return per_worker[0]


class EnginePool:
    """One VLLMEngine per engine bundle of the placement, each seeded differently (cfg: the run
    config, with `rollout`, `placement`, `model` and `seed`)."""

    def __init__(self, cfg, placement, model_path: str):
        self.cfg = cfg.rollout
        options = placement.options("engine")
        threads = current_platform().num_threads(cfg.placement.threads_per_actor, concurrent=len(options))
        self.engines = [
            VLLMEngine.options(name=f"engine-{i}", **opts).remote(model_path, cfg.rollout, cfg.seed + i,
                                                                  cfg.model.dtype, threads)
            for i, opts in enumerate(options)
        ]

    def generate(self, prompts: list[list[int]], n: int, temperature: float, seed: int) -> list[list[dict]]:
        """`n` samples per prompt, in prompt order; each engine takes a contiguous slice of the
        prompts, and prompt i is sampled with seed `seed + i` whichever engine takes it."""
        k = len(self.engines)
        bounds = [len(prompts) * i // k for i in range(k + 1)]
        futures = [
            engine.generate.remote(prompts[a:b], n, temperature, self.cfg.top_p, self.cfg.max_new_tokens,
                                   [seed + i for i in range(a, b)], self.cfg.stop)
            for engine, a, b in zip(self.engines, bounds, bounds[1:]) if b > a
        ]
        return [group for part in ray.get(futures) for group in part]
