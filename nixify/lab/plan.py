"""Which hosts a lab of N hosts has: the fleet's own, spread over the roles."""

from __future__ import annotations

from dataclasses import dataclass

from nixify.inventory import Fleet

# Roles whose extra hosts the lab adds when asked for more hosts than the fleet has.
_EXTRA_ROLES = ("wsl_dev", "laptop", "nas", "operator", "edge_ml")


@dataclass(frozen=True)
class LabHost:
    """A lab host: its name, role, and whether the fleet declares it."""

    name: str
    role: str
    declared: bool


def _prefix(role: str) -> str:
    return role.replace("_", "-")


def lab_host_plan(fleet: Fleet, count: int) -> list[LabHost]:
    """``count`` hosts: builders first, then the fleet's hosts role by role in turn,
    then (beyond the fleet) extra hosts of the non-builder roles in turn."""
    if count < 1:
        raise ValueError("a lab needs at least one host")
    builders = [h for h in fleet if h.is_builder]
    others = [h for h in fleet if not h.is_builder]
    by_role: dict[str, list[str]] = {}
    for h in others:
        by_role.setdefault(h.role, []).append(h.name)
    spread: list[str] = []
    while any(by_role.values()):
        for names in by_role.values():
            if names:
                spread.append(names.pop(0))
    chosen = [b.name for b in builders] + spread
    plan = [LabHost(n, fleet[n].role, True) for n in chosen[:count]]
    taken = {h.name for h in plan}
    index = 0
    while len(plan) < count:
        role = _EXTRA_ROLES[index % len(_EXTRA_ROLES)]
        number = index // len(_EXTRA_ROLES) + 1
        name = f"{_prefix(role)}-x{number}"
        index += 1
        if name not in taken:
            plan.append(LabHost(name, role, False))
            taken.add(name)
    # Keep declaration order for the fleet's hosts, extras after.
    order = {name: i for i, name in enumerate(fleet.hosts)}
    return sorted(plan, key=lambda h: (not h.declared, order.get(h.name, 0), h.name))
