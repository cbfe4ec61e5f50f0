"""The receive side of weight sync, running inside every vLLM worker.

vLLM mixes this class into its Worker (`LLM(worker_extension_cls=...)`); the engine actor
drives it with `llm.collective_rpc(name, args)`, so with tensor parallelism every TP worker
receives the full weights and keeps its own shard (vLLM's `load_weights` does the sharding).
Arguments are plain data (msgpack-safe); the tensors themselves come over the sync group.
"""

from __future__ import annotations

from system.sync import init_sync_group, receive


class WeightSyncWorker:
    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str) -> int:
        from vllm.distributed.parallel_state import get_tensor_model_parallel_rank

        rank = rank_offset + get_tensor_model_parallel_rank()
        self._weight_sync_group = init_sync_group(host, port, rank, world_size, backend)
        return rank

    def receive_weights(self, plan: list[list[dict]], verify: bool) -> list[int]:
        """Receive every bucket of the plan and load it in place, bucket by bucket as vLLM's
        `reload_weights` consumes the iterator; returns one checksum per bucket if `verify`."""
        sums: list[int] = []
        weights = receive(self._weight_sync_group, plan, self.device, verify, sums)
        # Checkpoint format: HF names and layouts; vLLM repacks/shards them as it does at load time.
        self.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
        return sums
