"""A lost node: which node each actor of a run lives on, and what the run does when one goes away.

A node that goes away (its machine powered off, its raylet killed) takes all of its actors at once.
Ray restarts them (max_restarts=-1, actors/placement.py) only where their placement-group bundles
can go again: on another node that offers the same resources, or on one that joins. `NodeWatch`
gives the cluster `fault.lost_node_wait_s` to do so while recovery waits for the actors to come
back; otherwise the run stops with an error that names the node, its actors and the checkpoint to
resume from, which is left as it was.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import ray

from system.faults import FaultError


class NodeLost(FaultError):
    """A node went away with actors of the run, and no other node took them in time."""


def actor_nodes(named: list[tuple[str, object]]) -> dict[str, str]:
    """The node id of each (name, actor handle), from Ray's actor table (no call to the actors)."""
    # Private, as actors/calls.py: restart_counts (the public state API needs the dashboard).
    return {name: ray._private.state.actors(actor._actor_id.hex())["Address"]["NodeID"] for name, actor in named}


def describe(node: dict) -> str:
    """A node as a user finds it again: its address, id and the custom resources it offers (which
    Ray's node table lists for live nodes only)."""
    custom = sorted(k for k in node["Resources"] if k not in ("CPU", "GPU", "memory", "object_store_memory")
                    and not k.startswith("node:"))
    return f"{node['NodeManagerAddress']} (id {node['NodeID'][:8]}{', ' + ', '.join(custom) if custom else ''})"


class NodeWatch:
    """Knows the node of every actor of `named()`, and the run's placement groups (`pgs`, of
    actors/placement.py); `check` is called while recovery waits for restarted actors. `newest_checkpoint`
    finds the run's newest complete checkpoint (in checkpoint.dir, or RUN_DIR/checkpoints), named when
    the run stops."""

    def __init__(self, named, pgs: list, wait_s: float, newest_checkpoint: Callable[[], Optional[str]]):
        self.named, self.wait_s, self.newest_checkpoint = named, wait_s, newest_checkpoint
        self.pgs = pgs
        self.refresh()

    def refresh(self) -> None:
        """Read where the actors are: when the run starts, and once it is back after a failure."""
        self.where = actor_nodes(self.named())
        self.described = {n["NodeID"]: describe(n) for n in ray.nodes() if n["NodeID"] in self.where.values()}
        self.lost_seen: float | None = None  # time.monotonic() when a node of the run was first seen dead

    def check(self, phase: str) -> None:
        """Raise NodeLost when a node of the run is dead and, `wait_s` after the driver first saw it so,
        Ray has not placed the run's bundles anew on live nodes; otherwise return (the actors come back)."""
        nodes = {n["NodeID"]: n for n in ray.nodes()}
        lost = {node for node in set(self.where.values()) if not nodes.get(node, {}).get("Alive", False)}
        if not lost:
            return
        now = time.monotonic()
        self.lost_seen = self.lost_seen or now
        groups = [ray.util.placement_group_table(pg) for pg in self.pgs]
        placed = all(g["state"] == "CREATED" and all(nodes.get(n, {}).get("Alive", False)
                                                     for n in g["bundles_to_node_id"].values()) for g in groups)
        if placed or now - self.lost_seen < self.wait_s:
            return
        on = {node: ", ".join(sorted(n for n, at in self.where.items() if at == node)) for node in lost}
        gone = "; ".join(f"node {self.described.get(node, node[:8])} with {on[node]}" for node in sorted(lost))
        checkpoint = self.newest_checkpoint()
        kept = (f"its last checkpoint, {checkpoint}, is intact. With the node back (or another that offers its "
                "resources), resume=true goes on." if checkpoint else
                "no checkpoint was written yet: with the node back, start the run again.")
        raise NodeLost(f"lost {gone} (phase: {phase}); no node of the cluster took their place within "
                       f"{self.wait_s:.0f} s (fault.lost_node_wait_s), so the run stops: {kept}")
