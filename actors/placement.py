"""Placement groups built from the config: which bundle (devices) each actor runs on.

Separate (default): every role reserves its own bundles, so generation and training never
compete for a device. Colocate: policy, reference, teacher and engines share one bundle per device
(fractional GPU requests), the layout for small clusters. On CPU the bundles hold logical CPU
counts. Reward and env workers are always CPU-only. Every engine with tensor parallelism > 1 gets a
placement group of its own, which vLLM's Ray executor then fills with its TP workers.

Ray keeps a placement group that the cluster cannot hold pending for ever, and a run waiting on it
says nothing. So every group is planned first and checked against the cluster (what all of them ask
for against its totals, each bundle against its largest node), an error at once naming what was
asked and what there is; and a group that does not become ready within `ready_timeout_s` (other jobs
hold the resources) is an error naming it and its bundles.
"""

from __future__ import annotations

import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from system.config.grpo import PlacementConfig
from system.config.roles import DEVICE_ROLES, ROLES, Roles
from system.platform import Platform

READY_TIMEOUT_S = 600.0  # the longest a placement group may wait for resources that others hold


class PlacementError(RuntimeError):
    """The cluster cannot hold the run's placement groups, or did not within the bound."""


def _role_cpus(p: PlacementConfig) -> dict[str, float]:
    """Logical CPUs per actor of each role: `placement.<role>_cpus`."""
    return {role: getattr(p, f"{role}_cpus") for role in ROLES}


class Placement:
    """`roles`: how many actors of each role (a run config's `roles()`); `p`: the placement section;
    `max_restarts`: how often Ray restarts a dead actor in its bundle (-1: always; actors/recovery.py)."""

    def __init__(self, roles: Roles, p: PlacementConfig, platform: Platform, max_restarts: int = 0,
                 ready_timeout_s: float = READY_TIMEOUT_S):
        self.use_gpu = platform.is_gpu
        self.max_restarts = max_restarts
        self.counts, self.cpus = roles.counts(), _role_cpus(p)
        self.tp = roles.engine_devices
        self.colocate = p.colocate
        self.node_resources = p.node_resources  # role -> custom resources its bundles ask for
        self.groups: dict[str, list] = {}  # role -> [(pg, bundle index)] per actor (while planning: the plan index)
        self.plan: list[tuple[str, list[dict]]] = []  # (the roles it is for, its bundles) per placement group
        self.pgs: list = []
        devices = max(self.counts[role] * (self.tp if role == "engine" else 1) for role in DEVICE_ROLES)
        if self.colocate:
            cpus = sum(self.cpus[k] for k in DEVICE_ROLES if self.counts[k])  # of the roles this run has
            shared = self._plan("colocated roles", [self._device_bundle(cpus, *DEVICE_ROLES)] * devices)
            for role in DEVICE_ROLES:
                per_actor = self.tp if role == "engine" else 1  # bundles (devices) per actor
                self.groups[role] = [(shared, i * per_actor) for i in range(self.counts[role])]
        else:
            for role in [r for r in DEVICE_ROLES if r != "engine"]:
                bundles = [self._device_bundle(self.cpus[role], role)] * self.counts[role]
                pg = self._plan(role, bundles) if bundles else None
                self.groups[role] = [(pg, i) for i in range(self.counts[role])]
            engine_bundle = self._device_bundle(self.cpus["engine"], "engine")
            self.groups["engine"] = [(self._plan(f"engine-{i}", [engine_bundle] * self.tp), 0)
                                     for i in range(self.counts["engine"])]
        for role in [r for r in ROLES if r not in DEVICE_ROLES]:  # CPU-only workers
            bundle = {"CPU": self.cpus[role], **self.node_resources.get(role, {})}
            pg = self._plan(role, [bundle] * self.counts[role]) if self.counts[role] else None
            self.groups[role] = [(pg, i) for i in range(self.counts[role])]
        check_fits(self.plan, ray.cluster_resources(), [n["Resources"] for n in ray.nodes() if n["Alive"]])
        for name, bundles in self.plan:
            self._create(name, bundles, ready_timeout_s)
        self.groups = {role: [(None if k is None else self.pgs[k], i) for k, i in places]
                       for role, places in self.groups.items()}

    def _device_bundle(self, cpus: float, *roles: str) -> dict:
        """One device's bundle for `roles`, with the custom resources they ask for
        (placement.node_resources)."""
        custom = {k: v for role in roles for k, v in self.node_resources.get(role, {}).items()}
        return {**({"GPU": 1, "CPU": max(cpus, 1)} if self.use_gpu else {"CPU": cpus}), **custom}

    def _plan(self, name: str, bundles: list[dict]) -> int:
        """Plan a placement group (created once the whole plan fits the cluster); its index in the plan."""
        self.plan.append((name, bundles))
        return len(self.plan) - 1

    def _create(self, name: str, bundles: list[dict], timeout_s: float) -> None:
        """Make a planned placement group (appended to self.pgs) and wait for it; if it is not ready in
        time, remove every group made so far and raise."""
        pg = placement_group(bundles, strategy="PACK")
        self.pgs.append(pg)
        if not pg.wait(timeout_s):
            total, free = ray.cluster_resources(), ray.available_resources()
            error = PlacementError(
                f"the placement group of {name} ({len(bundles)} x {_short(bundles[0])}) was not ready within "
                f"{timeout_s:.0f} s: the cluster has {_short({r: total.get(r, 0.0) for r in bundles[0]})}, of "
                f"which {_short({r: free.get(r, 0.0) for r in bundles[0]})} free; other jobs or runs hold the "
                f"rest ({_pending()} placement groups pending, this one among them)")
            self.remove()
            raise error

    def remove(self) -> None:
        for pg in self.pgs:
            remove_placement_group(pg)

    def options(self, role: str) -> list[dict]:
        """`.options(...)` kwargs for each actor of `role`."""
        out = []
        for pg, index in self.groups[role]:
            gpus = 0.0
            if self.use_gpu and role in DEVICE_ROLES:
                gpus = DEVICE_ROLES[role] if self.colocate else 1.0
                if role == "engine" and self.tp > 1:
                    gpus = 0.0  # vLLM's Ray executor places its TP workers in this placement group
            out.append({
                "num_cpus": self.cpus[role],
                "num_gpus": gpus,
                "max_restarts": self.max_restarts,
                "scheduling_strategy": PlacementGroupSchedulingStrategy(
                    pg, placement_group_bundle_index=index, placement_group_capture_child_tasks=True
                ),
            })
        return out

    @staticmethod
    def logical_cpus(roles: Roles, p: PlacementConfig) -> float:
        """Logical CPUs the job reserves: a local Ray runtime is started with at least this many."""
        counts, cpus = roles.counts(), _role_cpus(p)
        counts["engine"] *= roles.engine_devices
        return sum(cpus[role] * count for role, count in counts.items())


def check_fits(plan: list[tuple[str, list[dict]]], total: dict[str, float], nodes: list[dict[str, float]]) -> None:
    """A PlacementError naming what the plan's groups ask for and what the cluster has (`total`; `nodes`:
    each node's), if it cannot hold them all even empty, or a bundle fits no single node."""
    asked: dict[str, float] = {}
    for _, bundles in plan:
        for bundle in bundles:
            for resource, amount in bundle.items():
                asked[resource] = asked.get(resource, 0.0) + amount
    short = {r: a for r, a in asked.items() if a > total.get(r, 0.0) + 1e-9}
    roles = ", ".join(f"{name}: {len(bundles)} x {_short(bundles[0])}" for name, bundles in plan)
    if short:
        raise PlacementError(f"the run asks for {_short(short)} and the cluster has "
                             f"{_short({r: total.get(r, 0.0) for r in short})} ({roles}): lower the actor counts "
                             "(rollout.num_engines, reward.num_workers, ...) or placement.<role>_cpus, or add nodes")
    for name, bundles in plan:
        if not any(all(node.get(r, 0.0) + 1e-9 >= a for r, a in bundles[0].items()) for node in nodes):
            raise PlacementError(f"a bundle of {name}, {_short(bundles[0])}, fits on no node of the cluster "
                                 f"(its nodes: {'; '.join(_short(n) for n in nodes)})")


def _short(resources: dict[str, float]) -> str:
    """Resources as `{CPU: 4, GPU: 1}`, without Ray's own per-node, memory and placement-group entries."""
    shown = {r: a for r, a in resources.items()
             if not r.startswith("node:") and "memory" not in r and "_group_" not in r}
    return "{" + ", ".join(f"{r}: {a:g}" for r, a in sorted(shown.items())) + "}"


def _pending() -> int:
    return sum(info["state"] == "PENDING" for info in placement_group_table().values())
