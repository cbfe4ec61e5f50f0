"""Driver-side orchestration of weight sync: policy rank 0 -> every engine worker.

Set-up builds one process group (policy rank 0 = rank 0, engine workers after it) on the
node of policy rank 0, over the platform's backend (NCCL on GPUs, gloo on CPU); each sync
broadcasts the planned buckets (system/sync.py) and, when asked to, compares the checksums
that both sides computed.
"""

from __future__ import annotations

import ray

from system.platform import Platform


class WeightSync:
    def __init__(self, policy, engines: list, tensor_parallel_size: int, platform: Platform):
        self.policy, self.engines = policy, engines
        self.buckets = ray.get(policy.call("weight_buckets"))[0]
        backend = platform.dist_backend
        world_size = 1 + len(engines) * tensor_parallel_size
        host, port = ray.get(policy.actors[0].node_address.remote())
        ray.get(
            policy.call("init_weight_sync", host, port, world_size, backend)
            + [e.init_weight_sync.remote(host, port, 1 + i * tensor_parallel_size, world_size, backend)
               for i, e in enumerate(engines)]
        )

    def __call__(self, version: int, verify: bool = False) -> None:
        """Send the policy's current weights, `version` updates old; with `verify`, both sides
        checksum the bytes and a mismatch raises."""
        sent = self.policy.call("broadcast_weights", verify)
        received = [e.receive_weights.remote(self.buckets, verify, version) for e in self.engines]
        sent_sums = ray.get(sent)[0]
        if not all(sums == sent_sums for sums in ray.get(received)):
            raise RuntimeError("weight sync: an engine received different bytes than the policy sent")
