"""Placement groups built from the config: which bundle (devices) each actor runs on.

Separate (default): every role reserves its own bundles, so generation and training never
compete for a device. Colocate: policy, reference, teacher and engines share one bundle per device
(fractional GPU requests), the layout for small clusters. On CPU the bundles hold logical CPU
counts. Reward and env workers are always CPU-only. Every engine with tensor parallelism > 1 gets a
placement group of its own, which vLLM's Ray executor then fills with its TP workers.
"""

from __future__ import annotations

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from system.config.grpo import DEVICE_ROLES, ROLES, PlacementConfig, Roles
from system.platform import Platform


def _role_cpus(p: PlacementConfig) -> dict[str, float]:
    """Logical CPUs per actor of each role: `placement.<role>_cpus`."""
    return {role: getattr(p, f"{role}_cpus") for role in ROLES}


class Placement:
    """`roles`: how many actors of each role (a run config's `roles()`); `p`: the placement section;
    `max_restarts`: how often Ray restarts a dead actor in its bundle (-1: always; actors/recovery.py)."""

    def __init__(self, roles: Roles, p: PlacementConfig, platform: Platform, max_restarts: int = 0):
        self.use_gpu = platform.is_gpu
        self.max_restarts = max_restarts
        self.counts, self.cpus = roles.counts(), _role_cpus(p)
        self.tp = roles.engine_devices
        self.colocate = p.colocate
        self.node_resources = p.node_resources  # role -> custom resources its bundles ask for
        self.groups: dict[str, list] = {}  # role -> [(pg, bundle index)] per actor
        self.pgs: list = []
        devices = max(self.counts[role] * (self.tp if role == "engine" else 1) for role in DEVICE_ROLES)
        if self.colocate:
            cpus = sum(self.cpus[k] for k in DEVICE_ROLES if self.counts[k])  # of the roles this run has
            shared = self._make([self._device_bundle(cpus, *DEVICE_ROLES)] * devices)
            for role in DEVICE_ROLES:
                per_actor = self.tp if role == "engine" else 1  # bundles (devices) per actor
                self.groups[role] = [(shared, i * per_actor) for i in range(self.counts[role])]
        else:
            for role in [r for r in DEVICE_ROLES if r != "engine"]:
                bundles = [self._device_bundle(self.cpus[role], role)] * self.counts[role]
                pg = self._make(bundles) if bundles else None
                self.groups[role] = [(pg, i) for i in range(self.counts[role])]
            engine_bundle = self._device_bundle(self.cpus["engine"], "engine")
            self.groups["engine"] = [(self._make([engine_bundle] * self.tp), 0)
                                     for _ in range(self.counts["engine"])]
        for role in [r for r in ROLES if r not in DEVICE_ROLES]:  # CPU-only workers
            bundle = {"CPU": self.cpus[role], **self.node_resources.get(role, {})}
            pg = self._make([bundle] * self.counts[role]) if self.counts[role] else None
            self.groups[role] = [(pg, i) for i in range(self.counts[role])]

    def _device_bundle(self, cpus: float, *roles: str) -> dict:
        """One device's bundle for `roles`, with the custom resources they ask for
        (placement.node_resources)."""
        custom = {k: v for role in roles for k, v in self.node_resources.get(role, {}).items()}
        return {**({"GPU": 1, "CPU": max(cpus, 1)} if self.use_gpu else {"CPU": cpus}), **custom}

    def _make(self, bundles: list[dict]):
        pg = placement_group(bundles, strategy="PACK")
        ray.get(pg.ready())
        self.pgs.append(pg)
        return pg

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
