"""SFT trainer actor: one data-parallel rank of a DeepSpeed model trained on chats.

The same engine, optimizer and checkpoints as the GRPO policy (system/training/engines.py); only
the step differs (system/training/sft.py). A finished run's model is an HF folder, as a GRPO checkpoint's.
"""

from __future__ import annotations

import math

import ray

from actors.group import DistributedActor
from system.training.engines import init_train_engine, load_checkpoint, save_checkpoint, save_model
from system.training.sft import SFTRow, nll_sum, sft_update


@ray.remote
class SFTTrainer(DistributedActor):
    def init(self, master: tuple[str, int], total_steps: int) -> None:
        self._init_distributed(master)
        t = self.cfg.train
        grad_accum = math.ceil(self.cfg.batch_size // self.world_size / t.micro_batch_size)
        self.engine = init_train_engine(self.model_path, t, self.dtype, grad_accum, self.world_size,
                                        self.platform, self.platform.attn_implementation(self.dtype),
                                        total_updates=total_steps)

    def train_step(self, rows: list[SFTRow], total_tokens: float) -> dict[str, float]:
        return sft_update(self.engine, rows, total_tokens, micro_batch=self.cfg.train.micro_batch_size,
                          world_size=self.world_size)

    def eval_nll(self, rows: list[SFTRow]) -> dict[str, float]:
        return nll_sum(self.engine, rows, micro_batch=self.cfg.train.micro_batch_size)

    def save_checkpoint(self, path: str) -> None:
        save_checkpoint(self.engine, path, self.model_path, self.cfg.train.zero_stage, self.rank)

    def load_checkpoint(self, path: str) -> None:
        load_checkpoint(self.engine, path)

    def save_model(self, path: str) -> None:
        save_model(self.engine, path, self.model_path, self.cfg.train.zero_stage, self.rank)
