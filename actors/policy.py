"""Policy trainer actor: one data-parallel rank of the DeepSpeed policy.

Rank 0 also sends the weights to the rollout engines after every update. With LoRA
(`train.lora.enabled`) the ranks also score the reference log-probs, on their base model with the
adapters off, and a sync sends the merged weights of the adapted modules only (system/training/lora.py).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import ray
import torch

from actors.group import DistributedActor
from system.weight_sync import BucketBuffers, init_sync_group, plan_buckets, send
from system.training.engines import init_train_engine, load_checkpoint, save_checkpoint
from system.training.grpo import grpo_update
from system.training.logprobs import compute_logprobs
from system.training.lora import SyncTensor, is_lora, sync_tensors
from system.training.samples import TrainingSample


@ray.remote
class PolicyTrainer(DistributedActor):
    def init(self, master: tuple[str, int]) -> None:
        self._init_distributed(master, self.cfg.fault.collective_timeout_s)
        t = self.cfg.train
        samples = self.cfg.prompts_per_step * self.cfg.rollout.group_size
        per_rank = samples // t.num_minibatches // self.world_size
        grad_accum = math.ceil(per_rank / t.micro_batch_size)
        self.engine = init_train_engine(self.model_path, t, self.dtype, grad_accum, self.world_size,
                                        self.platform, self.platform.attn_implementation(self.dtype, t.share_prefixes),
                                        total_updates=self.cfg.steps * t.num_minibatches * t.ppo_epochs)
        self.model = self.engine.module
        self.sync_tensors = sync_tensors(self.model) if is_lora(self.model) else whole_model(self.model)
        self.sync_buffers = None  # BucketBuffers of the plan, from the first sync on

    def weight_buckets(self) -> list[list[dict]]:
        named = [(n, sources[0].dtype, tuple(_full_shape(sources[0]))) for n, sources, _ in self.sync_tensors]
        self.buckets = plan_buckets(named, self.cfg.sync.bucket_mb)
        return self.buckets

    def init_weight_sync(self, host: str, port: int, world_size: int, backend: str, timeout_s: float) -> None:
        self.sync_group = None
        if self.rank == 0:
            self.sync_group = init_sync_group(host, port, 0, world_size, backend, timeout_s)

    def broadcast_weights(self, verify: bool) -> list[int]:
        """All ranks enter (ZeRO-3 gathers are collective); rank 0 sends each bucket (and checksums
        it when `verify`)."""
        import deepspeed

        by_name = {name: (sources, value) for name, sources, value in self.sync_tensors}

        @contextmanager
        def tensors_of(bucket):
            entries = [by_name[m["name"]] for m in bucket]
            params = [p for sources, _ in entries for p in sources]
            with deepspeed.zero.GatheredParameters(params, enabled=self.cfg.train.zero_stage == 3):
                yield [value() for _, value in entries]

        self.sync_buffers = BucketBuffers.for_plan(self.buckets, self.engine.device, self.sync_buffers)
        return send(self.sync_group, self.buckets, tensors_of, self.sync_buffers, verify)

    def update(self, minibatches: list[list[TrainingSample]]) -> dict[str, float]:
        t = self.cfg.train
        return grpo_update(self.engine, minibatches, self.cfg.algorithm,
                           max_tokens=t.max_tokens_per_microbatch, micro_batch=t.micro_batch_size,
                           ppo_epochs=t.ppo_epochs,
                           temperature=self.cfg.rollout.temperature, world_size=self.world_size,
                           distill=self.cfg.on_policy_distill, share_prefixes=t.share_prefixes)

    def reference_logprobs(self, seqs: list[TrainingSample]) -> list[torch.Tensor]:
        """With LoRA, the reference's log-probs (as actors/reference.py computes them): this rank's
        base model, the adapters switched off."""
        self.engine.eval()
        with self.model.disable_adapter():
            return compute_logprobs(self.engine, seqs, self.cfg.rollout.temperature,
                                    max_tokens=self.cfg.train.max_tokens_per_microbatch,
                                    micro_batch=self.cfg.reference.micro_batch_size,
                                    share_prefixes=self.cfg.train.share_prefixes)

    def save_checkpoint(self, path: str) -> None:
        """All ranks: DeepSpeed's optimizer/scheduler state; rank 0 also the HF folder of the policy."""
        save_checkpoint(self.engine, path, self.model_path, self.cfg.train.zero_stage, self.rank)

    def load_checkpoint(self, path: str) -> None:
        load_checkpoint(self.engine, path)


def whole_model(model) -> list[SyncTensor]:
    """Every parameter, as it is. Tied output embeddings are the input embeddings: sending them twice is
    waste."""
    tied = getattr(model.config, "tie_word_embeddings", False)
    return [(n, [p], lambda p=p: p.data) for n, p in model.named_parameters()
            if not (tied and n == "lm_head.weight")]


def _full_shape(p: torch.Tensor) -> torch.Size:
    """ZeRO-3 partitions parameters; `ds_shape` is the shape of the whole tensor."""
    return getattr(p, "ds_shape", p.shape)
