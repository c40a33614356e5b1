"""Which builder builds which host: by preference, reachability and Nix system."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # an annotation only: the inventory (pydantic) is not loaded for it
    from nixify.inventory import HostData

# One command answers "is it up, what can it build, how many jobs": Nix's own view.
PROBE_COMMAND = "nix show-config --json"


@dataclass(frozen=True)
class BuilderProbe:
    """What a builder said when asked (or why it could not be asked)."""

    name: str
    reachable: bool
    systems: frozenset[str] = frozenset()
    max_jobs: int = 0
    error: str = ""

    def can_build(self, system: str) -> bool:
        return self.reachable and self.max_jobs > 0 and system in self.systems


def parse_builder_probe(name: str, text: str) -> BuilderProbe:
    """Read ``nix show-config --json`` from a builder."""
    import json

    try:
        cfg = json.loads(text)
        system = cfg["system"]["value"]
        extra = cfg.get("extra-platforms", {}).get("value", [])
        max_jobs = int(cfg["max-jobs"]["value"])
    except (ValueError, KeyError, TypeError) as exc:
        return BuilderProbe(name, False, error=f"unreadable nix configuration: {exc}")
    return BuilderProbe(name, True, frozenset([system, *extra]), max_jobs)


@dataclass(frozen=True)
class Assignment:
    """A host's builder, or why it has none."""

    host: str
    builder: str | None
    reason: str = ""


def assign_builders(
    hosts: Sequence[HostData], probes: Mapping[str, BuilderProbe]
) -> dict[str, Assignment]:
    """Each host gets the first of its preferred builders that is reachable and
    builds its Nix system; a host is never built on itself. With none, the reason
    names every builder tried and what was wrong with it."""
    result: dict[str, Assignment] = {}
    for host in hosts:
        tried: list[str] = []
        chosen = None
        for name in host.builders:
            probe = probes.get(name)
            if name == host.name:
                continue
            if probe is None:
                tried.append(f"{name}: not probed")
            elif not probe.reachable:
                tried.append(f"{name}: unreachable ({probe.error})")
            elif probe.max_jobs <= 0:
                tried.append(f"{name}: max-jobs = 0")
            elif host.nix_system not in probe.systems:
                tried.append(f"{name}: does not build {host.nix_system}")
            else:
                chosen = name
                break
        if chosen:
            result[host.name] = Assignment(host.name, chosen)
        else:
            why = "; ".join(tried) if tried else "no builders declared"
            result[host.name] = Assignment(host.name, None, f"no builder reachable: {why}")
    return result
