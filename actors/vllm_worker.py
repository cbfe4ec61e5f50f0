"""The receive side of weight sync, running inside every vLLM worker.

vLLM mixes this class into its Worker (`LLM(worker_extension_cls=...)`); the engine actor
drives it with `llm.collective_rpc(name, args)`, so with tensor parallelism every TP worker
receives the full weights and keeps its own shard (vLLM's `load_weights` does the sharding).
Arguments are plain data (msgpack-safe); the tensors themselves come over the sync group.
"""

from __future__ import annotations

import logging
import re

from system.weight_sync import BucketBuffers, init_sync_group, receive

# vLLM's layer-wise reload warns about every layer that received no weights, at every sync. Two
# always do, rightly: RotaryEmbedding has no weights (only a computed cos/sin cache), and a tied
# LM head is the input embedding (vLLM drops `lm_head.weight` from checkpoints as an alias), which
# `_refresh_tied_lm_heads` brings up to date below. Only those two messages are dropped.
RELOAD_LOGGER = "vllm.model_executor.model_loader.reload.layerwise"
EXPECTED = re.compile(r"^(RotaryEmbedding|ParallelLMHead): Failed to load weights$")


class WeightSyncWorker:
    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str,
                         timeout_s: float) -> int:
        from vllm.distributed.parallel_state import get_tensor_model_parallel_rank

        logger = logging.getLogger(RELOAD_LOGGER)
        if not any(isinstance(f, _DropExpectedReloadWarnings) for f in logger.filters):
            logger.addFilter(_DropExpectedReloadWarnings())
        rank = rank_offset + get_tensor_model_parallel_rank()
        self._weight_sync_group = init_sync_group(host, port, rank, world_size, backend, timeout_s)
        self._weight_sync_buffers = None  # BucketBuffers, kept from one sync to the next
        return rank

    def receive_weights(self, plan: list[list[dict]], verify: bool) -> list[int]:
        """Receive every bucket of the plan and load it in place, bucket by bucket as vLLM's
        `reload_weights` consumes the iterator; returns one checksum per bucket if `verify`."""
        from vllm.config import set_current_vllm_config

        sums: list[int] = []
        self._weight_sync_buffers = BucketBuffers.for_plan(plan, self.device, self._weight_sync_buffers)
        weights = receive(self._weight_sync_group, plan, self._weight_sync_buffers, verify, sums)
        # Checkpoint format: HF names and layouts; vLLM repacks/shards them as it does at load time.
        self.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
        with set_current_vllm_config(self.vllm_config):
            _refresh_tied_lm_heads(self.model_runner.get_model())
        return sums


def _refresh_tied_lm_heads(model) -> None:
    """A tied LM head shares the input embedding's weight, which the reload updated in place; but
    on CPU the head computes its logits from a copy of that weight which vLLM packed for oneDNN at
    engine start, and the reload re-processes only layers that received weights. Without this the
    engine would sample from the first policy's LM head for the whole run. (GPU: the head reads the
    shared weight and this repacks nothing.)"""
    from vllm.model_executor.layers.vocab_parallel_embedding import (ParallelLMHead,
                                                                     UnquantizedEmbeddingMethod,
                                                                     VocabParallelEmbedding)

    inputs = {id(m.weight) for m in model.modules()
              if isinstance(m, VocabParallelEmbedding) and not isinstance(m, ParallelLMHead)}
    for head in model.modules():
        if (isinstance(head, ParallelLMHead) and id(head.weight) in inputs
                and isinstance(head.quant_method, UnquantizedEmbeddingMethod)):
            head.quant_method.process_weights_after_loading(head)


class _DropExpectedReloadWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and EXPECTED.match(record.getMessage()))
