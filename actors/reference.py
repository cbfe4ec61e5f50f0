"""Frozen models that score the policy's samples: the reference (the initial policy, for the KL term;
not created when kl_coef is 0) and the teacher of on-policy distillation (another model, when
on_policy_distill.teacher_path is set). Both are the same actor with another model and config section."""

from __future__ import annotations

import ray
import torch

from actors.group import ActorGroup, DistributedActor
from system.training.engines import init_eval_engine
from system.training.logprobs import compute_logprobs
from system.training.samples import TrainingSample


class FrozenModel(DistributedActor):
    section = "reference"  # the config section with its zero_stage and micro_batch_size

    def init(self, master: tuple[str, int]) -> None:
        self._init_distributed(master, self.cfg.fault.collective_timeout_s)
        r = getattr(self.cfg, self.section)
        self.engine = init_eval_engine(self.model_path, r.zero_stage, r.micro_batch_size, self.dtype,
                                       self.world_size,
                                       self.platform.attn_implementation(self.dtype, self.cfg.train.share_prefixes))

    def logprobs(self, seqs: list[TrainingSample]) -> list[torch.Tensor]:
        return compute_logprobs(self.engine, seqs, self.cfg.rollout.temperature,
                                max_tokens=self.cfg.train.max_tokens_per_microbatch,
                                micro_batch=getattr(self.cfg, self.section).micro_batch_size,
                                share_prefixes=self.cfg.train.share_prefixes)


@ray.remote
class ReferenceModel(FrozenModel):
    pass


@ray.remote
class TeacherModel(FrozenModel):
    section = "on_policy_distill"


def logprobs_under(group: ActorGroup, samples: list[TrainingSample], phase: str,
                   method: str = "logprobs") -> list[torch.Tensor]:
    """Each sample's per-token log-probs under the group's model, the samples split over its ranks
    (`method`: with LoRA the policy's `reference_logprobs`, its base model with the adapters off)."""
    k = len(group.actors)
    shards = [samples[len(samples) * i // k: len(samples) * (i + 1) // k] for i in range(k)]
    return [lp for part in group.run_sharded(method, shards, phase=phase) for lp in part]
