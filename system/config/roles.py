"""The roles of a run's actors and how many of each it has: what its placement reserves.

`Roles` is the one list of the roles; ROLES and DEVICE_ROLES are read off it, `placement.<role>_cpus`
follow it (actors/placement.py). Every run schema (GRPO's, SFT's, distillation's) says its counts
with a `roles()` method.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

def _role(colocated_share: float = 0.0):
    """A role's actor count. `colocated_share` > 0: the role runs on devices (GPUs), and with
    placement.colocate takes this share of one; 0: its workers run on CPUs only."""
    return field(default=0, metadata={"colocated_share": colocated_share})


@dataclass(frozen=True)
class Roles:
    """How many actors of each role a run has: what its placement reserves (actors/placement.py).
    Every run schema (GRPO's, SFT's, distillation's) says it with a `roles()` method. The one list of
    the roles: ROLES and DEVICE_ROLES below are read off it, `placement.<role>_cpus` follow it."""

    engine: int = _role(colocated_share=0.4)
    policy: int = _role(colocated_share=0.4)  # trainer ranks (the SFT trainer's too)
    reference: int = _role(colocated_share=0.1)
    teacher: int = _role(colocated_share=0.1)  # on_policy_distill's teacher ranks
    reward: int = _role()
    env: int = _role()
    engine_devices: int = 1  # devices per engine: its tensor-parallel size

    def counts(self) -> dict[str, int]:
        return {role: getattr(self, role) for role in ROLES}


ROLES = tuple(f.name for f in fields(Roles) if "colocated_share" in f.metadata)
# role -> the share of one device it takes when colocated, for the roles that run on devices
DEVICE_ROLES = {f.name: f.metadata["colocated_share"] for f in fields(Roles)
                if f.metadata.get("colocated_share")}
