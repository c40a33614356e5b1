"""The fleet plan without a lab: grouping by cause, per role, skipped hosts, drift,
rendering, and the check a deploy with ``--data plan=FILE`` makes at gate 4.

Gate evidence is made by the real ``ClosureDiff.to_json`` / ``RootCauseReport.to_json``
on small closures, so the plan reads exactly what gate 2 writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nixify.diff import diff_closures
from nixify.diff.closure import Closure, PathInfo
from nixify.diff.drift import DriftPolicy
from nixify.diff.rca import Cause, Change, RootCauseReport
from nixify.errors import ConfigError
from nixify.pipeline.options import Mode, RunKind, RunOptions
from nixify.pipeline.plan import (
    PLAN_SCHEMA,
    FleetPlan,
    build_plan,
    check_planned,
    load_plan,
    render_plan,
)
from nixify.pipeline.report import GateOutcome, GateResult, HostReport, HostStatus, RunReport


def sp(tag: str, name: str) -> str:
    """A store path: 32 characters of hash from ``tag``, then ``name``."""
    return f"/nix/store/{(tag * 32)[:32]}-{name}"


def closure(root: str, pkgs: dict[str, int]) -> Closure:
    paths = {p: PathInfo(p, size) for p, size in pkgs.items()}
    paths[root] = PathInfo(root, 100, tuple(pkgs))
    return Closure(root, paths)


OPENSSL_OLD = sp("a", "openssl-3.0.13")
OPENSSL_NEW = sp("b", "openssl-3.0.15")
GLIBC = sp("c", "glibc-2.39")
TLP = sp("d", "tlp-1.6.1")
HTOP = sp("f", "htop-3.3")


def diff_evidence(host: str, old_pkgs: dict[str, int], new_pkgs: dict[str, int],
                  causes: list[Cause] | None, expect: frozenset[str] = frozenset()
                  ) -> tuple[str, str, dict[str, Any]]:
    """(old root, new root, gate 2 evidence) as ``operations.gates._diff`` writes it."""
    old_root = sp("0", f"nixos-system-{host}-26.11")  # rebuilt, same name: as in the lab
    new_root = sp("1", f"nixos-system-{host}-26.11") if old_pkgs != new_pkgs else old_root
    diff = diff_closures(closure(old_root, old_pkgs), closure(new_root, new_pkgs))
    rca = RootCauseReport(diff, causes, []) if causes is not None else None
    verdict = DriftPolicy(expected=expect, accept=True).check(diff, rca)
    ev: dict[str, Any] = {
        "counts": diff.counts(),
        "diff": diff.to_json(),
        "drift": {"ok": verdict.ok, "unexpected": list(verdict.unexpected),
                  "message": verdict.message},
    }
    if rca is not None:
        ev["rca"] = rca.to_json()
    else:
        ev["rca_note"] = "root-cause analysis unavailable: no derivations"
    return old_root, new_root, ev


def openssl_cause() -> Cause:
    return Cause(
        old_drv=sp("e", "openssl-3.0.13.drv"), new_drv=sp("g", "openssl-3.0.15.drv"),
        changes=[Change("env", "name", "openssl-3.0.13", "openssl-3.0.15"),
                 Change("env", "version", "3.0.13", "3.0.15")],
        consequences={OPENSSL_NEW}, removes={OPENSSL_OLD},
    )


def planned_host(name: str, role: str, ev: tuple[str, str, dict[str, Any]] | None,
                 status: HostStatus = HostStatus.DRY_RUN, reason: str | None = None
                 ) -> HostReport:
    rep = HostReport(host=name, role=role, mode="plan", status=status, reason=reason,
                     builder="builder-1")
    if ev is None:
        return rep
    old, new, evidence = ev
    rep.previous, rep.closure = old, new
    rep.gate("build", GateResult(result=GateOutcome.PASSED, evidence={"closure": new}))
    rep.gate("diff", GateResult(result=GateOutcome.PASSED, evidence=evidence))
    rep.gate("dry-activate", GateResult(result=GateOutcome.PASSED))
    return rep


BASE = {OPENSSL_OLD: 3000, GLIBC: 6000}
BUMPED = {OPENSSL_NEW: 3100, GLIBC: 6000}


def fleet_report(expect: frozenset[str] = frozenset()) -> RunReport:
    report = RunReport(kind="deploy", mode="plan", started="2026-01-01T00:00:00+00:00",
                       commit="c0ffee" * 6 + "abcd", dirty=False)
    hosts: list[HostReport] = []
    for i in range(1, 5):
        hosts.append(planned_host(f"wsl-dev-{i}", "wsl_dev",
                                  diff_evidence(f"wsl-dev-{i}", BASE, BUMPED,
                                                [openssl_cause()], expect)))
    for i in range(1, 3):  # laptops: openssl, and tlp added; no RCA on laptop-2
        new = {**BUMPED, TLP: 500}
        causes = [openssl_cause(), Cause(None, sp("h", "tlp-1.6.1.drv"),
                                         [Change("input-added", "tlp", None, "tlp-1.6.1")],
                                         {TLP})]
        hosts.append(planned_host(f"laptop-{i}", "laptop",
                                  diff_evidence(f"laptop-{i}", BASE, new,
                                                causes if i == 1 else None, expect)))
    hosts.append(planned_host("laptop-3", "laptop", None, HostStatus.SKIPPED,
                              "gate build: no builder reachable (builder-1: down)"))
    hosts.append(planned_host("nas-1", "nas", diff_evidence("nas-1", BASE, BASE, [], expect)))
    for h in hosts:
        report.hosts[h.host] = h
    return report


def test_changes_are_grouped_by_cause_with_hosts_per_role() -> None:
    plan = build_plan(fleet_report())
    first = plan.causes[0]
    assert first.title == "openssl 3.0.13 → 3.0.15" and first.root_cause == "version"
    assert first.hosts == ["laptop-1", "wsl-dev-1", "wsl-dev-2", "wsl-dev-3", "wsl-dev-4"]
    assert first.roles == {"wsl_dev": 4, "laptop": 1}
    assert first.line == ("openssl 3.0.13 → 3.0.15 (root cause: version): 5 hosts — "
                          "wsl_dev \u00d74, laptop \u00d71")
    titles = {c.title: c for c in plan.causes}
    # laptop-2 had no RCA: its package changes stand in for causes, marked as such
    fallback = [c for c in plan.causes if not c.analysed]
    assert {c.title for c in fallback} == {"openssl 3.0.13 → 3.0.15", "tlp 1.6.1 added"}
    assert all(c.hosts == ["laptop-2"] and c.root_cause.startswith("not analysed")
               for c in fallback)
    assert titles["tlp 1.6.1 added"].hosts in (["laptop-1"], ["laptop-2"])
    assert plan.hosts["nas-1"].status == "unchanged" and plan.hosts["nas-1"].causes == []


def test_roles_skipped_hosts_and_sizes() -> None:
    plan = build_plan(fleet_report())
    roles = {r.role: r for r in plan.roles}
    assert roles["laptop"].added == ["tlp 1.6.1"] and roles["laptop"].removed == []
    assert roles["laptop"].hosts == ["laptop-1", "laptop-2", "laptop-3"]
    assert roles["laptop"].changing == ["laptop-1", "laptop-2"]
    old, new = roles["wsl_dev"].old_size["wsl-dev-1"], roles["wsl_dev"].new_size["wsl-dev-1"]
    assert new - old == 100
    assert plan.skipped == {"laptop-3": "gate build: no builder reachable (builder-1: down)"}
    assert not plan.ok  # a host would not deploy


def test_drift_against_expect() -> None:
    matching = build_plan(fleet_report(frozenset({"openssl", "tlp"})), ["openssl", "tlp"])
    assert matching.drift.ok and matching.drift.unexpected == {}
    narrow = build_plan(fleet_report(frozenset({"openssl"})), ["openssl"])
    assert not narrow.drift.ok
    assert set(narrow.drift.unexpected) == {"laptop-1", "laptop-2"}
    assert any("tlp" in u for u in narrow.drift.unexpected["laptop-1"])
    undeclared = build_plan(fleet_report())
    assert undeclared.drift.ok and not undeclared.drift.declared


def test_without_the_skipped_host_the_plan_matches() -> None:
    report = fleet_report(frozenset({"openssl", "tlp"}))
    del report.hosts["laptop-3"]
    assert build_plan(report, ["openssl", "tlp"]).ok
    assert not build_plan(report, []).drift.declared and build_plan(report, []).ok


def test_render_names_every_cause_with_its_root_cause_and_host_count() -> None:
    text = render_plan(build_plan(fleet_report(frozenset({"openssl"})), ["openssl"]))
    assert text.startswith("Plan on 8 hosts: nothing activated on any host")
    assert ("#1 openssl 3.0.13 → 3.0.15 (root cause: version): 5 hosts — "
            "wsl_dev \u00d74, laptop \u00d71") in text
    assert "environment" not in text and "env version: '3.0.13' -> '3.0.15'" in text
    assert "laptop \u00d73: 2 of 3 change;" in text and "+ added: tlp 1.6.1" in text
    assert "laptop-3 (laptop): skipped: gate build: no builder reachable" in text
    assert "Drift against expect=openssl: NOT as declared (2 hosts)" in text
    assert "nas-1 (nas): unchanged" in text
    assert "~ openssl 3.0.13 → 3.0.15  +100 B" in text
    assert text.rstrip().endswith("does NOT match: hosts would not deploy, drift.")


def test_the_plan_round_trips_and_checks_closures(tmp_path: Path) -> None:
    plan = build_plan(fleet_report())
    path = tmp_path / "plan.json"
    plan.write(path)
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == PLAN_SCHEMA and doc["ok"] is False
    assert doc["skipped"] == plan.skipped
    loaded = load_plan(path)
    assert loaded == plan
    planned = plan.hosts["wsl-dev-1"].closure
    assert planned is not None
    assert check_planned(loaded, "wsl-dev-1", planned) is None
    other = sp("9", "nixos-system-wsl-dev-1-3")
    why = check_planned(loaded, "wsl-dev-1", other)
    assert why is not None and other in why and planned in why and "changed after" in why
    why = check_planned(loaded, "edge-ml-1", planned)
    assert why is not None and why.startswith("not in the plan")
    why = check_planned(loaded, "laptop-3", planned)
    assert why is not None and "would not deploy" in why and "no builder" in why


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "not JSON"),
        ("[]", "not a plan"),
        ('{"hosts": {}}', "schema_version None"),
        ('{"schema_version": 1, "hosts": {"a": {"host": "a"}}}', "field hosts.a.role"),
    ],
)
def test_a_bad_plan_file_is_named(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_plan(path)
    assert f"--data plan={path}" in str(err.value) and words in str(err.value)
    with pytest.raises(ConfigError, match="cannot read the plan"):
        load_plan(tmp_path / "missing.json")


def test_mode_plan_activates_nothing_and_takes_no_lock() -> None:
    opts = RunOptions.parse({"mode": "plan", "expect": "openssl"}, RunKind.DEPLOY)
    assert opts.mode is Mode.PLAN
    assert not opts.mode.activates and not opts.mode.sets_profile
    assert not opts.mode.takes_lock and Mode.DRY.takes_lock and Mode.SWITCH.takes_lock
    with pytest.raises(ConfigError, match=r"deploy\.py only"):
        RunOptions.parse({"mode": "plan"}, RunKind.ROLLBACK)
    with pytest.raises(ConfigError, match="not for another plan"):
        RunOptions.parse({"mode": "plan", "plan": "x.json"}, RunKind.DEPLOY)
    saved = RunOptions.parse({"plan": "~/plan.json"}, RunKind.DEPLOY)
    assert saved.plan == Path("~/plan.json").expanduser()
    with pytest.raises(ConfigError, match=r"applies to deploy\.py only"):
        RunOptions.parse({"plan": "x.json"}, RunKind.ROLLBACK)


def test_an_empty_report_is_no_plan() -> None:
    plan = FleetPlan()
    assert not plan.ok
    assert "Plan on 0 hosts" in render_plan(plan)
