"""The receive side of weight sync, running inside every vLLM worker.

vLLM mixes this class into its Worker (`LLM(worker_extension_cls=...)`); the rollout actor
drives it with `llm.collective_rpc(name, args)`, so with tensor parallelism every TP worker
receives the full weights and keeps its own shard (vLLM's `load_weights` does the sharding).
Arguments are plain data (msgpack-safe); the tensors themselves come over the sync group.
"""

from __future__ import annotations

from system.sync import checksum, empty_bucket, init_sync_group, start_broadcast, unflatten_bucket


class WeightSyncWorker:
    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str) -> int:
        from vllm.distributed.parallel_state import get_tensor_model_parallel_rank

        rank = rank_offset + get_tensor_model_parallel_rank()
        self._weight_sync_group = init_sync_group(host, port, rank, world_size, backend)
        return rank

    def receive_weights(self, buckets: list[list[dict]], verify: bool) -> list[int]:
        """Receive every bucket and load it in place; returns one checksum per bucket if `verify`.

        The buckets are received lazily while vLLM's `reload_weights` consumes the iterator:
        bucket k+1 is on the wire while bucket k is loaded, so two are held beyond the model."""
        sums: list[int] = []

        def loaded(bucket, flat, work):
            work.wait()
            if verify:
                sums.append(checksum(flat))
            return unflatten_bucket(bucket, flat)

        def received():
            previous = None
            for bucket in buckets:
                flat = empty_bucket(bucket, self.device)
                work = start_broadcast(self._weight_sync_group, flat)
                if previous:
                    yield from loaded(*previous)
                previous = (bucket, flat, work)
            if previous:
                yield from loaded(*previous)

        # Checkpoint format: HF names and layouts; vLLM repacks/shards them as it does at load time.
        self.reload_weights(weights_iterator=received(), is_checkpoint_format=True)
        return sums
