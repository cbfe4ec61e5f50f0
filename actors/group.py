"""Data-parallel groups of actors: k ranks of one role, rendezvousing at rank 0's node.

Addresses come from Ray (the node IP of rank 0 and a port free there), so the same code runs
on one host or a multi-node cluster.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import ray

from actors.calls import actor_names, bounded_get
from system.platform import current_platform


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class DistributedActor:
    """Base of the model-holding ranks (policy, reference, SFT): one rank of a torch.distributed
    group. Construction is cheap; `init(master)` joins the group and loads the model."""

    def __init__(self, rank: int, world_size: int, model_path: str, cfg, pad_id: int):
        self.rank, self.world_size, self.model_path = rank, world_size, model_path
        self.cfg, self.pad_id = cfg, pad_id
        self.platform = current_platform()
        self.dtype = self.platform.model_dtype(cfg.model.dtype)  # "auto": by this actor's own hardware
        self.platform.set_threads(self.platform.num_threads(cfg.placement.threads_per_actor))
        # Told, DeepSpeed does not guess the accelerator (and warn that it guessed) when first imported.
        os.environ.setdefault("DS_ACCELERATOR", self.platform.device)

    def node_address(self) -> tuple[str, int]:
        return ray.util.get_node_ip_address(), free_port()

    def _init_distributed(self, master: tuple[str, int], timeout_s: float = 1800.0) -> None:
        """Join the group; `timeout_s` bounds each of its collectives waiting on a peer (a dead one)."""
        import deepspeed

        os.environ.update(MASTER_ADDR=master[0], MASTER_PORT=str(master[1]), RANK=str(self.rank),
                          WORLD_SIZE=str(self.world_size), LOCAL_RANK="0")
        deepspeed.init_distributed(dist_backend=self.platform.dist_backend,
                                   timeout=timedelta(seconds=timeout_s))


class ActorGroup:
    """One actor of `actor_cls` per entry of `options` (placement and resources), rank = index.
    `timeout_s` bounds every wait on the group (actors/calls.py)."""

    def __init__(self, actor_cls, name: str, options: list[dict], *args, timeout_s: float = 1800.0):
        self.names = actor_names(name, len(options))
        self.actors = [
            actor_cls.options(name=self.names[rank], **opts).remote(rank, len(options), *args)
            for rank, opts in enumerate(options)
        ]
        self.timeout_s = timeout_s

    def named(self) -> list[tuple[str, object]]:
        return list(zip(self.names, self.actors))

    def init(self, *args) -> None:
        """Rendezvous: every rank calls `init(master_address, *args)` at once."""
        address = self.actors[0].node_address.remote()
        master = bounded_get([(self.names[0], address)], "init", self.timeout_s)[0]
        self.run("init", master, *args, phase="init")

    def call(self, method: str, *args) -> list:
        return [getattr(a, method).remote(*args) for a in self.actors]

    def run(self, method: str, *args, phase: str) -> list:
        """Every rank's result of `method(*args)`, waiting at most `timeout_s`."""
        return bounded_get(list(zip(self.names, self.call(method, *args))), phase, self.timeout_s)

    def run_sharded(self, method: str, shards: list, *args, phase: str) -> list:
        """Rank i's result of `method(shards[i], *args)`, waiting at most `timeout_s`."""
        calls = [(n, getattr(a, method).remote(shard, *args))
                 for n, a, shard in zip(self.names, self.actors, shards)]
        return bounded_get(calls, phase, self.timeout_s)
