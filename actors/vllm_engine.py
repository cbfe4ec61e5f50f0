"""vLLM engine actors, and the pool that fans a batch of prompts out over them.

Token in, token out: prompts arrive as token ids and samples leave as token ids with the
sampling log-probs of every generated token, so the trainer scores exactly what was sampled.
Each engine also receives new weights (its workers run actors/vllm_worker.py).
"""

from __future__ import annotations

import itertools
import os

import ray

from actors.calls import actor_names
from actors.engine_turns import EngineTurns, StampedSample
from system.platform import current_platform


@ray.remote(max_concurrency=2)  # a weight load runs beside a generate call, between its decode steps
class VLLMEngine:
    def __init__(self, model_path: str, cfg, seed: int, dtype: str, threads: int,
                 partial_rollout: bool = False):
        """`threads`: torch threads of the engine on CPU (see Platform.num_threads); `partial_rollout`:
        weights may land in the middle of a generate call."""
        platform = current_platform()
        os.environ.update(platform.vllm_env(cfg.cpu_kv_cache_gib, threads))
        platform.set_threads(threads)  # before the engine starts: vLLM's CPU worker then forbids changing it
        from vllm import LLM

        self.llm = LLM(
            model=model_path,
            dtype=platform.model_dtype(dtype),
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
        self.turns = EngineTurns(partial_rollout)  # generate calls, served requests and weight loads share it
        self._request_ids = itertools.count()
        self.platform, self.threads = platform, threads
        self.endpoint = None  # the OpenAI-compatible endpoint for agent episodes, once one is opened

    def generate(self, prompts: list[list[int]], n: int, temperature: float, top_p: float, max_tokens: int,
                 seeds: list[int], stop: list[str] | None = None) -> list[list[dict]]:
        """For each prompt, `n` samples: {"response": ids, "logprobs": floats, "versions": the policy
        version that sampled each token, "finish_reason", "text"}.

        With partial rollouts a weight load (`receive_weights`, on the actor's other thread) may land
        between two decode steps, so a sample's tokens can come from two versions (actors/engine_turns.py)."""
        from vllm import SamplingParams, TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        self._own_threads()
        params = [
            SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, logprobs=0,
                           seed=seed, stop=stop or None, include_stop_str_in_output=True,
                           output_kind=RequestOutputKind.DELTA)
            for seed in seeds
        ]
        engine = self.llm.llm_engine
        ids = [str(next(self._request_ids)) for _ in prompts]
        samples = {rid: [StampedSample() for _ in range(n)] for rid in ids}
        pending = list(zip(ids, prompts, params))

        def admit() -> None:  # this call's requests, all before its first step, rendered as LLM.generate does
            for rid, prompt, sp in pending:
                # No public vLLM 0.32 call renders alone: LLM.enqueue also adds, and forces FINAL_ONLY output.
                rendered = self.llm._preprocess_cmpl_one(TokensPrompt(prompt_token_ids=prompt))
                engine.add_request(rid, rendered, sp)
            pending.clear()

        for outputs, version in self.turns.steps(engine, admit):
            for out in outputs:
                for c in out.outputs:
                    samples[out.request_id][c.index].add(c, version)
        return [[sample.result() for sample in samples[rid]] for rid in ids]

    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str,
                         timeout_s: float) -> list[int]:
        return self.llm.collective_rpc("init_weight_sync",
                                       args=(host, port, rank_offset, world_size, backend, timeout_s))

    def receive_weights(self, buckets: list[list[dict]], verify: bool, version: int) -> list[int]:
        """Load the weights of update `version`: between two decode steps of a generate call in flight
        with partial rollouts, else once it is done (actors/engine_turns.py)."""
        self._own_threads()
        with self.turns.weight_load(version):
            per_worker = self.llm.collective_rpc("receive_weights", args=(buckets, verify))
            if any(sums != per_worker[0] for sums in per_worker):
                raise RuntimeError("tensor-parallel workers received different bytes")
            # KV computed with the old weights must not be reused: not from the prefix cache, nor by
            # requests in flight, which vLLM preempts and recomputes (their tokens so far are kept).
            self.llm.reset_prefix_cache(reset_running_requests=True)
        return per_worker[0]

    def open_episodes(self, episodes: dict[str, dict], serving: dict) -> str:
        """Serve these agent episodes (id -> sampling) on this engine's OpenAI-compatible endpoint
        (actors/openai_server.py), started on first use beside `generate`; returns its root URL."""
        if self.endpoint is None:
            from actors.engine_bridge import EngineBridge
            from actors.openai_server import EpisodeServer

            bridge = EngineBridge(self.llm.llm_engine, self.turns, self._own_threads)
            self.endpoint = EpisodeServer(bridge, serving)
        self.endpoint.open(episodes)
        return self.endpoint.url

    def close_episodes(self, ids: list[str]) -> dict[str, list]:
        """The episodes' recorded calls (system/agents/episodes.py: Call); their URLs stop answering.
        An engine restarted since they were opened has none."""
        return self.endpoint.close(ids) if self.endpoint else {eid: [] for eid in ids}

    def _own_threads(self) -> None:
        """This call may run on another of the actor's threads than the last one, and OpenMP keeps a
        thread count per thread (the process started with Ray's OMP_NUM_THREADS=1): vLLM's CPU
        attention checks that it runs on as many as at start-up."""
        self.platform.set_threads(self.threads)


CHUNKS_PER_ENGINE = 2  # with several engines: a batch is cut into this many chunks per engine


class EnginePool:
    """One VLLMEngine per engine bundle of the placement, each seeded differently (cfg: the run
    config, with `rollout`, `placement`, `model` and `seed`); `timeout_s`: the longest one
    generate call may take before the pool gives up on it."""

    def __init__(self, cfg, placement, model_path: str, partial_rollout: bool = False,
                 timeout_s: float = 1800.0):
        self.rollout_cfg, self.timeout_s = cfg.rollout, timeout_s
        options = placement.options("engine")
        threads = current_platform().num_threads(cfg.placement.threads_per_actor, concurrent=len(options))
        self.names = actor_names("engine", len(options))
        self.engines = [
            VLLMEngine.options(name=self.names[i], **opts).remote(model_path, cfg.rollout, cfg.seed + i,
                                                                  cfg.model.dtype, threads, partial_rollout)
            for i, opts in enumerate(options)
        ]

    def generate(self, prompts: list[list[int]], n: int, temperature: float, seed: int,
                 top_p: float | None = None) -> list[list[dict]]:
        """`n` samples per prompt (top_p None: the rollout's), in prompt order; prompt i is sampled with
        seed `seed + i` whichever engine takes it. One engine takes the whole batch; several take chunks,
        each engine the next chunk as soon as it is free, so a slow engine holds up no one."""
        k = len(self.engines)
        size = len(prompts) if k == 1 else max(1, -(-len(prompts) // (CHUNKS_PER_ENGINE * k)))
        todo = [(a, min(a + size, len(prompts))) for a in range(0, len(prompts), size)]
        free, running, done = list(range(k)), {}, {}  # engine indices; future -> (engine, first prompt)
        while todo or running:
            while free and todo:
                engine, (a, b) = free.pop(0), todo.pop(0)
                r = self.rollout_cfg
                seeds, p = [seed + i for i in range(a, b)], r.top_p if top_p is None else top_p
                future = self.engines[engine].generate.remote(prompts[a:b], n, temperature, p,
                                                              r.max_new_tokens, seeds, r.stop)
                running[future] = (engine, a)
            finished, _ = ray.wait(list(running), num_returns=1, timeout=self.timeout_s)
            if not finished:
                busy = [self.names[e] for e, _ in running.values()]
                raise TimeoutError(f"engine pool: no generate call finished within {self.timeout_s:.0f} s "
                                   f"({busy})")
            for future in finished:
                engine, a = running.pop(future)
                done[a] = ray.get(future)
                free.append(engine)
        return [group for a in sorted(done) for group in done[a]]
