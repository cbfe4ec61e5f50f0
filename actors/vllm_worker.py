"""The receive side of weight sync, running inside every vLLM worker.

vLLM mixes this class into its Worker (`LLM(worker_extension_cls=...)`); the rollout actor
drives it with `llm.collective_rpc(name, args)`, so with tensor parallelism every TP worker
receives the full weights and keeps its own shard (vLLM's `load_weights` does the sharding).
Arguments are plain data (msgpack-safe); the tensors themselves come over the sync group.
"""

from __future__ import annotations

from system.sync import broadcast, checksum, empty_bucket, init_sync_group, unflatten_bucket


class WeightSyncWorker:
    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str) -> int:
        from vllm.distributed.parallel_state import get_tensor_model_parallel_rank

        rank = rank_offset + get_tensor_model_parallel_rank()
        self._weight_sync_group = init_sync_group(host, port, rank, world_size, backend)
        return rank

    def receive_weights(self, buckets: list[list[dict]], verify: bool) -> list[int]:
        """Receive every bucket and load it in place; returns one checksum per bucket if `verify`.

        The buckets are received lazily while vLLM's `reload_weights` consumes the iterator,
        so only one bucket is held beyond the model itself."""
        sums: list[int] = []

        def received():
            for bucket in buckets:
                flat = empty_bucket(bucket, self.device)
                broadcast(self._weight_sync_group, flat)
                if verify:
                    sums.append(checksum(flat))
                yield from unflatten_bucket(bucket, flat)

        # Checkpoint format: HF names and layouts; vLLM repacks/shards them as it does at load time.
        self.reload_weights(weights_iterator=received(), is_checkpoint_format=True)
        return sums
