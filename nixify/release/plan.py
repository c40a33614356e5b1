"""Which release targets a finished run earned.

A role is a target when the run selected every host the inventory has of that role,
each passed all five gates and at least one of them changed; part of a role, a
failed host or a run that changed nothing earns no release (the hosts are still
pinned known-good), and the plan's notes say why. A run from a dirty tree (or
outside git, or a dry/rollback run) earns no release, and the plan says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nixify.pipeline.report import GATES, HostReport, RunReport


@dataclass(frozen=True)
class ReleaseTarget:
    """A role or a host, and the hosts whose evidence its tag carries."""

    name: str
    kind: str  # "role" | "host"
    hosts: tuple[str, ...]


@dataclass
class ReleasePlan:
    targets: list[ReleaseTarget] = field(default_factory=list)
    skipped: str | None = None  # why the run earns no release at all
    notes: list[str] = field(default_factory=list)


ROLLBACK_GATES: tuple[str, ...] = ("select", "dry-activate", "switch-test", "known-good")


def passed_every_gate(rep: HostReport, gates: tuple[str, ...] = GATES) -> bool:
    """The host is deployed, pinned, and every one of ``gates`` passed."""
    return (
        rep.status == "deployed"
        and bool(rep.known_good)
        and all(rep.gates.get(g) is not None and rep.gates[g].result == "passed" for g in gates)
    )


def plan_releases(report: RunReport, roles: Mapping[str, Sequence[str]]) -> ReleasePlan:
    """The targets ``report`` earns; ``roles`` maps each role to every host the
    inventory has of it (selected or not)."""
    if report.kind != "deploy":
        return ReleasePlan(skipped=f"a {report.kind} run moves no release pointer")
    if report.mode in ("dry", "plan"):
        return ReleasePlan(skipped=f"a {report.mode} run validates nothing to release")
    if not report.commit:
        return ReleasePlan(skipped="not deployed from a git commit")
    passed = {n for n, r in report.hosts.items() if passed_every_gate(r)}
    if report.dirty:
        return ReleasePlan(
            skipped=f"the work tree was dirty at {report.commit[:12]}: the hosts are pinned "
            "known-good, but no release is tagged for uncommitted changes"
        )
    if not passed:
        return ReleasePlan(skipped="no host passed every gate")
    plan = ReleasePlan()
    by_role: dict[str, list[str]] = {}
    for name, rep in report.hosts.items():
        if not rep.selected:
            continue
        by_role.setdefault(rep.role, []).append(name)
    for role in sorted(by_role):
        selected = sorted(by_role[role])
        members = sorted(roles.get(role, ()))
        all_selected = bool(members) and set(members) <= set(selected)
        failed = [h for h in selected if h not in passed]
        if failed:
            plan.notes.append(
                f"role {role}: not released ({', '.join(failed)} did not pass every gate)"
            )
            continue
        if not all_selected:
            # a release target is a role: part of a role is pinned, never released
            plan.notes.append(
                f"role {role}: not released (the run covered {len(selected)} of "
                f"{len(members)} hosts; the hosts are pinned known-good)"
            )
            continue
        if all(report.hosts[h].previous == report.hosts[h].closure for h in selected):
            plan.notes.append(f"role {role}: not released (nothing changed on its hosts)")
            continue
        plan.targets.append(ReleaseTarget(role, "role", tuple(selected)))
    return plan
