"""Reference actor: the frozen initial policy, for the KL term. Not created when kl_coef is 0."""

from __future__ import annotations

import ray
import torch

from actors.group import DistributedActor
from system.training.engines import init_eval_engine
from system.training.logprobs import compute_logprobs
from system.training.samples import TrainingSample


@ray.remote
class ReferenceModel(DistributedActor):
    def init(self, master: tuple[str, int]) -> None:
        self._init_distributed(master, self.cfg.fault.collective_timeout_s)
        r = self.cfg.reference
        self.engine = init_eval_engine(self.model_path, r.zero_stage, r.micro_batch_size, self.cfg.model.dtype,
                                       self.world_size, self.platform.attn_implementation(self.cfg.model.dtype))

    def logprobs(self, seqs: list[TrainingSample]) -> list[torch.Tensor]:
        return compute_logprobs(self.engine, seqs, self.cfg.rollout.temperature,
                                max_tokens=self.cfg.train.max_tokens_per_microbatch,
                                micro_batch=self.cfg.reference.micro_batch_size)
