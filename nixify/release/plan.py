"""Which release targets a finished run earned.

A role is a target when the run selected every host the inventory has of that role
and each passed all five gates; otherwise each host that passed all five gates is
its own target. A run from a dirty tree (or outside git, or a dry/rollback run)
earns no release, and the plan says why.
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
    if report.mode == "dry":
        return ReleasePlan(skipped="a dry run validates nothing to release")
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
        if all_selected and set(selected) <= passed:
            plan.targets.append(ReleaseTarget(role, "role", tuple(selected)))
            continue
        ok = [h for h in selected if h in passed]
        failed = [h for h in selected if h not in passed]
        if failed:
            plan.notes.append(
                f"role {role}: not released ({', '.join(failed)} did not pass every gate)"
            )
        elif ok:
            plan.notes.append(
                f"role {role}: not released as a role (run covered "
                f"{len(selected)} of {len(members)} hosts)"
            )
        plan.targets.extend(ReleaseTarget(h, "host", (h,)) for h in ok)
    return plan
