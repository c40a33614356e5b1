"""Release plans, tag evidence, the ledger and fleet status, from real git
repositories and real report/record objects (no hosts needed)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from nixify.pipeline.pins import KnownGoodRecord
from nixify.pipeline.report import GATES, GateResult, HostReport, RunReport
from nixify.release import (
    build_ledger,
    create_tag,
    list_tags,
    parse_message,
    plan_releases,
    publish,
)
from nixify.release.evidence import MARKER, ReleaseEvidence, hosts_evidence
from nixify.release.status import HostProbe, fleet_status, render, short

ROLES = {"nas": ["nas-1", "nas-2"], "wsl_dev": ["wsl-dev-1"], "remote_builder": ["builder-1"]}


def store(name: str, h: str = "a") -> str:
    return f"/nix/store/{h * 32}-nixos-system-{name}"


def host_report(host: str, role: str, closure: str, ok: bool = True) -> HostReport:
    rep = HostReport(host=host, role=role, builder="builder-1", closure=closure,
                     previous=store(host, "0"),
                     diff={"changed": 1, "added": 0, "removed": 0, "size_delta": 12})
    for g in GATES:
        detail = {"diff": "1 changed"}.get(g, "")
        evidence = {"diff": {"packages": [{"name": "samba", "old_versions": ["4.20.2"],
                                           "new_versions": ["4.20.3"]}],
                             "added": [], "removed": []}} if g == "diff" else {}
        rep.gate(g, GateResult(result="passed", seconds=0.5, detail=detail, evidence=evidence))
    if ok:
        rep.known_good = f"20261130T040000Z-{closure[11:19]}"
        rep.status = "deployed"
    else:
        rep.gates["switch-test"] = GateResult(result="failed", seconds=0.1, detail="exit 4")
        del rep.gates["known-good"]
        rep.fail("rolled-back", "gate switch-test: exit 4")
    return rep


def run_report(*hosts: HostReport, commit: str | None = "c" * 40, dirty: bool = False,
               kind: str = "deploy", mode: str = "switch") -> RunReport:
    rep = RunReport(kind=kind, mode=mode, started="2026-11-30T04:00:00+00:00", commit=commit,
                    dirty=dirty, operator="root@lab")
    rep.hosts = {h.host: h for h in hosts}
    return rep


# -- plans -----------------------------------------------------------------------------------


def test_a_whole_role_that_passed_is_one_target() -> None:
    plan = plan_releases(run_report(host_report("nas-1", "nas", store("nas-1", "b")),
                                    host_report("nas-2", "nas", store("nas-2", "c"))), ROLES)
    assert plan.skipped is None
    assert [(t.name, t.kind, t.hosts) for t in plan.targets] == [
        ("nas", "role", ("nas-1", "nas-2"))]


def test_a_host_that_failed_keeps_its_role_from_release() -> None:
    plan = plan_releases(run_report(host_report("nas-1", "nas", store("nas-1", "b")),
                                    host_report("nas-2", "nas", store("nas-2", "c"), ok=False)),
                         ROLES)
    assert plan.targets == []
    assert plan.notes == ["role nas: not released (nas-2 did not pass every gate)"]


def test_part_of_a_role_is_pinned_never_released_targets_are_roles() -> None:
    plan = plan_releases(run_report(host_report("nas-1", "nas", store("nas-1", "b")),
                                    host_report("wsl-dev-1", "wsl_dev", store("w", "d"))), ROLES)
    assert [(t.name, t.kind) for t in plan.targets] == [("wsl_dev", "role")]
    assert "covered 1 of 2 hosts" in plan.notes[0]


def test_a_run_that_changed_nothing_is_not_released_again() -> None:
    reps = [host_report("nas-1", "nas", store("nas-1", "b")),
            host_report("nas-2", "nas", store("nas-2", "c"))]
    for rep in reps:
        rep.previous = rep.closure  # a no-op redeploy
    plan = plan_releases(run_report(*reps), ROLES)
    assert plan.targets == []
    assert plan.notes == ["role nas: not released (nothing changed on its hosts)"]


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"dirty": True}, "work tree was dirty"),
        ({"commit": None}, "not deployed from a git commit"),
        ({"kind": "rollback"}, "a rollback run moves no release pointer"),
        ({"mode": "dry"}, "a dry run"),
    ],
)
def test_runs_that_earn_no_release_say_why(kwargs: dict[str, object], why: str) -> None:
    plan = plan_releases(run_report(host_report("nas-1", "nas", store("nas-1", "b")),
                                    **kwargs), ROLES)  # type: ignore[arg-type]
    assert plan.targets == [] and plan.skipped is not None and why in plan.skipped


# -- evidence ----------------------------------------------------------------------------------


def test_evidence_is_readable_and_reads_back_from_the_message() -> None:
    reps = [host_report("nas-1", "nas", store("nas-1", "b")),
            host_report("nas-2", "nas", store("nas-2", "c"))]
    ev = ReleaseEvidence("nas", "role", "c" * 40, "deploy", "switch", "root@lab",
                         "2026-11-30T04:00:00+00:00", hosts_evidence(reps))
    text = ev.message("release/nas/20261130T040000Z-ccccccc")
    assert text.startswith("release/nas/20261130T040000Z-ccccccc\n\nValidated role nas: 2 host")
    assert f"  closure:    {store('nas-1', 'b')}" in text
    assert "  diff:       1 changed, 0 added, 0 removed, +12 bytes" in text
    assert "samba: 4.20.2 -> 4.20.3" in text
    assert "known-good: 20261130T040000Z-bbbbbbbb (/nix/var/nix/gcroots/nixify/" in text
    assert "switch-test passed (0.5s)" in text
    assert parse_message(text) == ev
    assert parse_message("a hand-made tag\n") is None
    assert parse_message(f"x\n{MARKER}\nnot json") is None
    with pytest.raises(ValueError, match="nas-2: no closure or known-good pin"):
        hosts_evidence([host_report("nas-2", "nas", store("nas-2"), ok=False)])


# -- publish and the ledger on a real repository ------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.name", "t")
    git(r, "config", "user.email", "t@example.invalid")
    return r


def commit(repo: Path, name: str) -> str:
    (repo / name).write_text(name)
    git(repo, "add", name)
    git(repo, "commit", "-qm", f"feat: {name}")
    return git(repo, "rev-parse", "HEAD")


def record(host: str, rep: HostReport, commit: str | None, kind: str = "deploy",
           name: str | None = None, tag: str | None = None) -> KnownGoodRecord:
    assert rep.closure
    return KnownGoodRecord(name=name or rep.known_good or "", host=host, closure=rep.closure,
                           commit=commit, dirty=False, utc="2026-11-30T04:00:00+00:00",
                           kind=kind, tag=tag)


def test_publish_then_ledger_from_hosts_and_git_alone(repo: Path) -> None:
    c1 = commit(repo, "one")
    a1 = host_report("nas-1", "nas", store("nas-1", "b"))
    a2 = host_report("nas-2", "nas", store("nas-2", "c"))
    r1 = run_report(a1, a2, commit=c1)
    out = publish(repo, r1, plan_releases(r1, ROLES), stamp="20261130T040000Z")
    assert [(o.tag, o.branch_action) for o in out] == [
        (f"release/nas/20261130T040000Z-{c1[:7]}", "created")]
    tag1 = out[0].tag
    assert tag1 and out[0].tag_object == git(repo, "rev-parse", tag1)
    assert git(repo, "cat-file", "-t", tag1) == "tag"
    c2 = commit(repo, "two")
    b1 = host_report("nas-1", "nas", store("nas-1", "d"))
    b1.known_good = "20261130T050000Z-dddddddd"
    b2 = host_report("nas-2", "nas", store("nas-2", "e"))
    b2.known_good = "20261130T050000Z-eeeeeeee"
    r2 = run_report(b1, b2, commit=c2)
    out = publish(repo, r2, plan_releases(r2, ROLES), stamp="20261130T050000Z")
    assert out[0].branch_action == "advanced" and out[0].branch_old == c1
    tag2 = out[0].tag
    assert git(repo, "rev-parse", "release/nas") == c2
    # a deploy from a commit off the release line: refused, and no tag is made
    git(repo, "checkout", "-q", "-b", "side", c1)
    c3 = commit(repo, "three")
    r3 = run_report(b1, b2, commit=c3)
    out = publish(repo, r3, plan_releases(r3, ROLES), stamp="20261130T060000Z")
    assert out[0].tag is None and out[0].branch_action == "refused"
    assert "not a fast-forward" in (out[0].error or "") and "NOT tagged" in out[0].describe()
    assert [t.name for t in list_tags(repo)] == [tag1, tag2]

    # the hosts: nas-1's records carry their tags; nas-2's were never stamped; then a
    # rollback on nas-1 to the first closure, recorded with the rollback's HEAD commit
    rb = record("nas-1", a1, c2, kind="rollback", name="20261130T070000Z-bbbbbbbb")
    records = {
        "nas-1": [record("nas-1", a1, c1, tag=tag1), record("nas-1", b1, c2, tag=tag2), rb],
        "nas-2": [record("nas-2", a2, c1), record("nas-2", b2, c2)],
        "nas-3": [record("nas-3", a2, c3, kind="rollback", name="20261130T080000Z-x")],
        "nas-4": [record("nas-4", a2, c1, name="20261130T040000Z-y"),
                  record("nas-4", b2, c2, name="20261130T050000Z-y"),
                  record("nas-4", a2, c2, kind="rollback", name="20261130T060000Z-y")],
    }
    ledger = build_ledger(records, list_tags(repo))
    n1 = ledger.hosts["nas-1"]
    assert [(e.tag, e.tag_via, e.commit) for e in n1] == [
        (tag1, "record", c1), (tag2, "record", c2), (tag1, "closure", c1)]
    assert ledger.newest("nas-1") == n1[-1]
    n2 = ledger.hosts["nas-2"]
    assert [(e.tag, e.tag_via, e.commit) for e in n2] == [(tag1, "evidence", c1),
                                                          (tag2, "evidence", c2)]
    # untagged: a rollback takes the commit of the deploy that first pinned its
    # closure on that host, else keeps its own
    assert [(e.tag, e.commit) for e in ledger.hosts["nas-3"]] == [(None, c3)]
    assert [(e.tag, e.commit) for e in ledger.hosts["nas-4"]] == [
        (None, c1), (None, c2), (None, c1)]
    doc = ledger.to_json()
    assert [t["name"] for t in doc["tags"]] == [tag1, tag2]
    assert doc["tags"][0]["hosts"]["nas-2"] == {"closure": a2.closure,
                                                "record": a2.known_good}


def test_a_hand_made_tag_is_listed_without_evidence(repo: Path) -> None:
    c1 = commit(repo, "one")
    create_tag(repo, f"release/nas/20261130T040000Z-{c1[:7]}", c1, "by hand\n")
    ledger = build_ledger({"nas-1": []}, list_tags(repo))
    assert ledger.to_json()["tags"][0]["hosts"] == {}
    assert ledger.newest("nas-1") is None


# -- status --------------------------------------------------------------------------------------


def probe(host: str, running: str, recs: list[KnownGoodRecord], booted: str | None = None,
          roots: dict[str, str] | None = None) -> HostProbe:
    system = {"running": running, "booted": booted or running, "profile": running}
    return HostProbe(host=host, role="nas", reachable=True, system=system, records=recs,
                     roots=roots if roots is not None else {r.name: r.closure for r in recs})


def test_status_shows_drift_pins_and_unreachable_hosts() -> None:
    a1 = host_report("nas-1", "nas", store("nas-1", "b"))
    a2 = host_report("nas-2", "nas", store("nas-2", "c"))
    assert a1.closure and a2.closure
    r1, r2 = record("nas-1", a1, "c" * 40), record("nas-2", a2, "c" * 40)
    probes = [
        probe("nas-1", a1.closure, [r1]),
        probe("nas-2", store("nas-2", "f"), [r2], booted=store("nas-2", "9"), roots={}),
        HostProbe(host="nas-3", role="nas", reachable=False, error="did not answer over SSH"),
        probe("laptop-1", store("laptop-1", "1"), []),
        HostProbe(host="nas-4", role="nas", reachable=True, error="facts failed: bad record"),
    ]
    st = {s.host: s for s in fleet_status(probes)}
    assert list(st) == ["nas-1", "nas-2", "nas-3", "laptop-1", "nas-4"]  # nobody dropped
    assert st["nas-1"].drift() == []
    # booted != running is a pending reboot, not drift
    assert st["nas-2"].drift() == ["running != known-good", f"pin {r2.name} has no GC root"]
    assert st["nas-2"].reboot_pending
    assert st["nas-3"].drift() == [] and st["nas-3"].to_json()["reachable"] is False
    assert st["laptop-1"].drift() == ["no known-good pin"]
    doc = st["nas-2"].to_json()
    assert doc["running_is_known_good"] is False and doc["booted_is_running"] is False
    assert doc["pins"][0]["gcroot"] is False
    assert st["nas-3"].to_json()["running_is_known_good"] is None
    text = render(list(st.values()))
    lines = text.splitlines()
    assert lines[0].split() == ["HOST", "ROLE", "STATE", "RUNNING", "KNOWN-GOOD", "TAG", "PINS",
                                "NOTES"]
    assert re.match(r"nas-3 +nas +UNREACHABLE .* did not answer over SSH$", lines[3])
    assert re.match(r"nas-1 +nas +ok ", lines[1])
    assert re.match(r"nas-2 +nas +DRIFT .*running != known-good; pin .* has no GC root; "
                    r"reboot pending$", lines[2])
    assert "(1 without GC root)" in lines[2]
    assert re.match(r"nas-4 +nas +ERROR .*facts failed: bad record$", lines[5])
    assert lines[-1] == "4/5 hosts answered; 2 with drift; 1 reboot pending"
    assert short(a1.closure) == "bbbbbbbb-nixos-system-nas-1"
    back = HostProbe.from_json(probes[1].to_json())
    assert back == probes[1]
