"""Driver side of the weight broadcast: policy rank 0 sends its weights to every engine worker.

Set-up builds one process group (policy rank 0 = rank 0, engine workers after it) on the node of
policy rank 0, over the platform's backend (NCCL on GPUs, gloo on CPU); each `send` broadcasts the
planned buckets (the protocol both sides run: system/weight_sync.py) and, when asked to, compares
the checksums that both sides computed. Every wait is bounded (`timeout_s`, and the group's own
collective timeout), so a peer that died mid-broadcast becomes an ActorFailure naming it.
"""

from __future__ import annotations

from actors.calls import bounded_get
from system.platform import Platform


class WeightBroadcast:
    def __init__(self, policy, engines, tensor_parallel_size: int, platform: Platform, timeout_s: float,
                 collective_timeout_s: float):
        """`policy`: the ranks' ActorGroup; `engines`: the EnginePool."""
        self.policy, self.engines, self.tp, self.platform = policy, engines, tensor_parallel_size, platform
        self.timeout_s, self.collective_timeout_s = timeout_s, collective_timeout_s
        self.buckets = policy.run("weight_buckets", phase="sync set-up")[0]
        backend = platform.dist_backend
        world_size = 1 + len(engines.engines) * tensor_parallel_size
        host, port = bounded_get([(policy.names[0], policy.actors[0].node_address.remote())], "sync set-up",
                                 timeout_s)[0]
        joins = [(name, e.init_weight_sync.remote(host, port, 1 + i * tensor_parallel_size, world_size,
                                                  backend, collective_timeout_s))
                 for i, (name, e) in enumerate(zip(engines.names, engines.engines))]
        policy_joins = policy.call("init_weight_sync", host, port, world_size, backend, collective_timeout_s)
        bounded_get(list(zip(policy.names, policy_joins)) + joins, "sync set-up", timeout_s)

    def renewed(self) -> "WeightBroadcast":
        """A new group over the same actors: after a failure, the old group cannot be trusted."""
        return WeightBroadcast(self.policy, self.engines, self.tp, self.platform, self.timeout_s,
                               self.collective_timeout_s)

    def send(self, version: int, verify: bool = False) -> None:
        """Send the policy's current weights, `version` updates old; with `verify`, both sides
        checksum the bytes and a mismatch raises."""
        sent = list(zip(self.policy.names, self.policy.call("broadcast_weights", verify)))
        received = [(name, e.receive_weights.remote(self.buckets, verify, version))
                    for name, e in zip(self.engines.names, self.engines.engines)]
        sums = bounded_get(sent + received, "sync", self.timeout_s)
        sent_sums, received_sums = sums[0], sums[len(sent):]
        if not all(s == sent_sums for s in received_sums):
            raise RuntimeError("weight sync: an engine received different bytes than the policy sent")
