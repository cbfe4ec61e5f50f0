"""Looking inside live actors from a test, with Ray's `__ray_call__` (a function run in the actor
on its instance): the actors keep no methods that only tests would call."""

from __future__ import annotations

import ray
import torch


def engine_logprobs(engine, sequences: list[list[int]]) -> list[list[float]]:
    """log p(token_t | prefix) of every token after the first, under the engine's current weights."""

    def score(self, sequences):
        from vllm import SamplingParams, TokensPrompt

        self._own_threads()  # this thread may not have stepped the engine yet (vLLM checks its threads)
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=s) for s in sequences], params,
                                    use_tqdm=False)
        return [[step[token].logprob for step, token in zip(out.prompt_logprobs[1:], seq[1:])]
                for out, seq in zip(outputs, sequences)]

    return ray.get(engine.__ray_call__.remote(score, sequences))


def trainer_logprobs(policy, tokens: list[int]) -> torch.Tensor:
    """The same under the policy trainer's weights (every rank takes part: ZeRO-3 gathers are collective)."""
    from system.training.logprobs import compute_logprobs
    from system.training.samples import TrainingSample

    sample = TrainingSample(torch.tensor(tokens), torch.zeros(len(tokens)), torch.zeros(len(tokens)))

    def score(self, samples):
        self.engine.eval()
        return compute_logprobs(self.engine, samples, 1.0,
                                max_tokens=self.cfg.train.max_tokens_per_microbatch,
                                micro_batch=self.cfg.train.micro_batch_size,
                                share_prefixes=self.cfg.train.share_prefixes)

    return ray.get([a.__ray_call__.remote(score, [sample]) for a in policy.actors])[0][0][1:]
