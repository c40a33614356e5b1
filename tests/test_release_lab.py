"""Releases, status and rollback end to end: a real git repository, real hosts over
real SSH, real Nix. The tests run in order on one lab and one project repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labkit import (
    REPO,
    VENV_BIN,
    bring_up,
    edit,
    git,
    latest_report,
    pins,
    project_copy,
    running,
    ssh,
)
from labkit import pyinfra as run_pyinfra

from nixify.lab import LabState, control
from nixify.release import advance_branch, list_tags, parse_message
from nixify.release.git import ReleaseError

pytestmark = pytest.mark.lab

NAS = ("nas-1", "nas-2")
TAG = re.compile(r"^release/nas/\d{8}T\d{6}Z-[0-9a-f]{7}$")
SEEN: dict[str, Any] = {}


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    state = bring_up("release", 10, "127.0.6")  # both builders, nas-1 and nas-2: the whole role
    yield state
    control.down(Path(state.dir))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    proj = project_copy(tmp_path_factory.mktemp("release") / "project")
    shutil.copy2(REPO / "status.py", proj / "status.py")
    git(proj, "add", "status.py")
    git(proj, "commit", "-qm", "chore: status deploy")
    return proj


def deploy(lab: LabState, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_pyinfra(lab, "-y", "inventories/lab.py", "deploy.py", *args, cwd=project)


def nixify(lab: LabState, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NIXIFY_LAB_DIR=lab.dir, NIXIFY_INVENTORY="inventories/lab.py")
    env.pop("NIXIFY_REPO", None)
    return subprocess.run([str(VENV_BIN / "nixify"), *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def status(lab: LabState, project: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = nixify(lab, project, "status", "--json", *args)
    assert proc.stdout, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    return proc.returncode, {h["host"]: h for h in doc["hosts"]}


def nas_tags(project: Path) -> list[str]:
    return [t.name for t in list_tags(project, "nas")]


def record(lab: LabState, host: str, name: str) -> dict[str, Any]:
    out = ssh(lab, host, f"cat /var/lib/nixify/known-good/{name}.json").stdout
    return json.loads(out)  # type: ignore[no-any-return]


def build_logs(lab: LabState, host: str) -> int:
    out = ssh(lab, host, "find /nix/var/log/nix/drvs -type f 2>/dev/null | wc -l").stdout
    return int(out.strip())


def test_1_two_deploys_two_tags_and_the_branch_fast_forwards(lab: LabState, project: Path,
                                                             ) -> None:
    edit(project / "fleet" / "default.nix", 'release ? "26.11"', 'release ? "26.12"')
    git(project, "commit", "-qam", "feat: release 26.12")
    c1 = git(project, "rev-parse", "HEAD").strip()
    proc = deploy(lab, project, "--limit", "nas")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tags = nas_tags(project)
    assert len(tags) == 1 and TAG.match(tags[0]) and tags[0].endswith(c1[:7]), tags
    tag1 = tags[0]
    assert git(project, "cat-file", "-t", tag1).strip() == "tag"  # annotated
    assert git(project, "rev-parse", f"{tag1}^{{commit}}").strip() == c1
    assert git(project, "rev-parse", "release/nas").strip() == c1
    assert f"release nas: tagged {tag1}; release/nas created" in proc.stderr
    report = latest_report(project)
    outcome = report["releases"]["outcomes"][0]
    assert (outcome["target"], outcome["tag"], outcome["branch_action"]) == ("nas", tag1,
                                                                             "created")
    # the message carries, per host, closure, diff summary, gates and the pin
    message = git(project, "tag", "-l", "--format=%(contents)", tag1)
    evidence = parse_message(message)
    assert evidence is not None and evidence.commit == c1 and evidence.target_kind == "role"
    assert [h.host for h in evidence.hosts] == list(NAS)
    for h in evidence.hosts:
        rep = report["hosts"][h.host]
        assert h.closure == rep["closure"] == running(lab, h.host)
        assert h.known_good == rep["known_good"]
        # the nas hosts mount secrets: their install is a step of its own
        assert set(h.gates) == {"build", "diff", "dry-activate", "switch-test", "secrets",
                                "known-good"}
        assert all(g["result"] == "passed" for g in h.gates.values())
        assert h.diff["changed"] == rep["diff"]["changed"]
        assert f"  closure:    {h.closure}" in message
        assert f"  known-good: {h.known_good} (/nix/var/nix/gcroots/nixify/{h.known_good})" \
            in message
        # the host's own record names its release tag
        assert record(lab, h.host, h.known_good)["tag"] == tag1
    object1 = git(project, "rev-parse", tag1).strip()

    edit(project / "fleet" / "packages.nix", 'pname = "samba"; version = "4.20.2"',
         'pname = "samba"; version = "4.20.3"')
    git(project, "commit", "-qam", "feat(nas): samba 4.20.3")
    c2 = git(project, "rev-parse", "HEAD").strip()
    proc = deploy(lab, project, "--limit", "nas")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tags = nas_tags(project)
    assert len(tags) == 2 and tags[0] == tag1 and TAG.match(tags[1]) and tags[1].endswith(c2[:7])
    tag2 = tags[1]
    assert git(project, "rev-parse", "release/nas").strip() == c2
    assert git(project, "rev-parse", tag1).strip() == object1  # the old tag did not move
    assert f"release/nas fast-forwarded from {c1[:12]}" in proc.stderr
    moves = git(project, "reflog", "show", "--format=%H %gs", "refs/heads/release/nas").split("\n")
    assert [m.split()[0] for m in moves if m] == [c2, c1]
    message = git(project, "tag", "-l", "--format=%(contents)", tag2)
    assert "samba: 4.20.2 -> 4.20.3" in message
    SEEN.update(c1=c1, c2=c2, tag1=tag1, tag2=tag2,
                closures1={h.host: h.closure for h in evidence.hosts},
                closures2={h: running(lab, h) for h in NAS})


def test_2_status_after_a_deploy_even_without_local_reports(lab: LabState, project: Path,
                                                           ) -> None:
    shutil.rmtree(project / "reports")  # the ledger lives on the hosts and in git
    rc, hosts = status(lab, project)
    assert sorted(hosts) == sorted(h.name for h in lab.hosts)  # every host, builders too
    for name in NAS:
        h = hosts[name]
        assert h["reachable"] and h["running"] == SEEN["closures2"][name]
        kg = h["known_good"]
        assert kg["closure"] == h["running"] and kg["tag"] == SEEN["tag2"]
        assert kg["commit"] == SEEN["c2"] and kg["tag_via"] == "record"
        assert h["running_is_known_good"] is True
        assert "running != known-good" not in h["drift"]
        assert [p["tag"] for p in h["pins"]] == [SEEN["tag1"], SEEN["tag2"]]
        assert all(p["gcroot"] for p in h["pins"])
        # the lab booted its first system and switched since, as a real host does
        # (a reboot is pending: shown as such, not as drift)
        assert h["booted_is_running"] is False and h["reboot_pending"] is True
        assert h["drift"] == []
    never = hosts["laptop-1"]
    assert never["reachable"] and never["known_good"] is None
    assert never["drift"] == ["no known-good pin"]
    assert rc == 1  # hosts without a known-good pin
    proc = nixify(lab, project, "status", "--limit", "nas")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nas-1" in proc.stdout and "laptop-1" not in proc.stdout
    assert SEEN["tag2"] in proc.stdout and "2/2 hosts answered" in proc.stdout


def test_3_status_shows_an_out_of_band_switch_as_drift(lab: LabState, project: Path) -> None:
    old = SEEN["closures1"]["nas-2"]
    ssh(lab, "nas-2", f"nix-env -p /nix/var/nix/profiles/system --set {old} && "
        f"{old}/bin/switch-to-configuration switch")
    rc, hosts = status(lab, project, "--limit", "nas")
    assert rc == 1
    assert hosts["nas-2"]["running"] == old
    assert hosts["nas-2"]["running_is_known_good"] is False
    assert "running != known-good" in hosts["nas-2"]["drift"]
    assert hosts["nas-2"]["known_good"]["closure"] == SEEN["closures2"]["nas-2"]
    assert hosts["nas-1"]["running_is_known_good"] is True
    proc = nixify(lab, project, "status", "--limit", "nas")
    assert re.search(r"nas-2 .*running != known-good", proc.stdout), proc.stdout
    new = SEEN["closures2"]["nas-2"]
    ssh(lab, "nas-2", f"nix-env -p /nix/var/nix/profiles/system --set {new} && "
        f"{new}/bin/switch-to-configuration switch")


def test_4_a_host_that_does_not_answer_is_shown_not_dropped(lab: LabState, project: Path,
                                                           ) -> None:
    control.stop_host(Path(lab.dir), "nas-1")
    try:
        rc, hosts = status(lab, project, "--limit", "nas")
        proc = nixify(lab, project, "status", "--limit", "nas")
    finally:
        control.start_host(Path(lab.dir), "nas-1")
    assert rc == 1 and sorted(hosts) == list(NAS)
    assert hosts["nas-1"]["reachable"] is False and hosts["nas-1"]["running"] is None
    assert "did not answer" in hosts["nas-1"]["error"]
    assert hosts["nas-2"]["reachable"] and hosts["nas-2"]["running_is_known_good"] is True
    assert re.search(r"nas-1\s+nas\s+UNREACHABLE", proc.stdout), proc.stdout
    assert "1/2 hosts answered" in proc.stdout
    # not one host answers: pyinfra stops early, and still every host is listed
    for name in NAS:
        control.stop_host(Path(lab.dir), name)
    try:
        rc, hosts = status(lab, project, "--limit", "nas")
    finally:
        for name in NAS:
            control.start_host(Path(lab.dir), name)
    assert rc == 1 and sorted(hosts) == list(NAS)
    assert all(not h["reachable"] and h["role"] == "nas" for h in hosts.values())


def test_5_a_dirty_tree_gets_pins_but_no_release(lab: LabState, project: Path) -> None:
    (project / "fleet" / "default.nix").write_text(
        (project / "fleet" / "default.nix").read_text() + "# uncommitted note\n")
    before = {h: pins(lab, h) for h in NAS}
    tags = nas_tags(project)
    try:
        proc = deploy(lab, project, "--limit", "nas")
    finally:
        git(project, "checkout", "fleet/default.nix")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert nas_tags(project) == tags
    assert git(project, "rev-parse", "release/nas").strip() == SEEN["c2"]
    assert "release: none: the work tree was dirty" in proc.stderr
    report = latest_report(project)
    assert report["dirty"] is True and report["releases"]["outcomes"] == []
    assert "dirty" in report["releases"]["skipped"]
    for h in NAS:
        after = pins(lab, h)
        assert after[-1] not in before[h]
        # pins are per closure: the comment changed no closure, so tag2's record was
        # refreshed (not duplicated) and keeps its release tag
        assert len(after) == len(before[h])
        newest = record(lab, h, after[-1].removesuffix(".json"))
        assert newest["dirty"] is True and newest["tag"] == SEEN["tag2"]
        assert newest["closure"] == SEEN["closures2"][h]


def test_6_rollback_to_an_older_tag_builds_nothing(lab: LabState, project: Path) -> None:
    watch = ("builder-1", "cloud-builder-1", *NAS)
    logs = {b: build_logs(lab, b) for b in watch}
    stores = {b: ssh(lab, b, "ls /nix/store | wc -l").stdout for b in ("builder-1",)}
    proc = nixify(lab, project, "rollback", "--to", SEEN["tag1"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--limit nas" in proc.stderr and f"to={SEEN['tag1']}" in proc.stderr
    for h in NAS:
        assert running(lab, h) == SEEN["closures1"][h]
        assert ssh(lab, h, "readlink -f /nix/var/nix/profiles/system").stdout.strip() == \
            SEEN["closures1"][h]
    assert {b: build_logs(lab, b) for b in watch} == logs  # no build anywhere
    assert {b: ssh(lab, b, "ls /nix/store | wc -l").stdout for b in stores} == stores
    report = latest_report(project)
    assert report["kind"] == "rollback"
    for h in NAS:
        rep = report["hosts"][h]
        assert rep["status"] == "deployed" and "build" not in rep["gates"]
        assert [g for g in ("dry-activate", "switch-test", "known-good")
                if rep["gates"][g]["result"] == "passed"] == ["dry-activate", "switch-test",
                                                               "known-good"]
    assert "a rollback run moves no release pointer" in proc.stderr
    assert git(project, "rev-parse", "release/nas").strip() == SEEN["c2"]
    rollback = proc
    rc, hosts = status(lab, project, "--limit", "nas")
    assert rc == 0
    for h in NAS:
        kg = hosts[h]["known_good"]
        # a rollback restores the record it returns to: its place, commit and tag
        assert kg["closure"] == SEEN["closures1"][h] and kg["kind"] == "deploy"
        assert record(lab, h, kg["record"])["restored_at"]
        assert kg["tag"] == SEEN["tag1"] and kg["commit"] == SEEN["c1"]
        assert kg["tag_via"] == "record"  # the host's own record says which release it runs
        assert record(lab, h, kg["record"])["tag"] == SEEN["tag1"]
        assert f"release: {h}: rollback record {kg['record']} restores {SEEN['tag1']}" \
            in rollback.stderr
        assert hosts[h]["running_is_known_good"] is True
    proc = nixify(lab, project, "rollback", "--to", "release/nas/20990101T000000Z-abcdef0")
    assert proc.returncode != 0 and "no such release tag" in proc.stderr


def test_7_a_non_fast_forward_release_is_refused(lab: LabState, project: Path) -> None:
    # a branch off the first release: validated, pinned, but release/nas cannot move back
    git(project, "checkout", "-q", "-b", "side", SEEN["c1"])
    try:
        # a change on the side: validated and pinned, but off the release line
        edit(project / "fleet" / "packages.nix", 'pname = "samba"; version = "4.20.2"',
             'pname = "samba"; version = "4.20.9"')
        git(project, "commit", "-qam", "feat(nas): samba on a side branch")
        side = git(project, "rev-parse", "HEAD").strip()
        proc = deploy(lab, project, "--limit", "nas")
    finally:
        git(project, "checkout", "-q", "main")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "refused to move release/nas" in proc.stderr and "not a fast-forward" in proc.stderr
    assert git(project, "rev-parse", "release/nas").strip() == SEEN["c2"]
    assert nas_tags(project) == [SEEN["tag1"], SEEN["tag2"]]  # no tag outside the branch
    SEEN["side"] = {h: running(lab, h) for h in NAS}
    outcome = latest_report(project)["releases"]["outcomes"][0]
    assert outcome["branch_action"] == "refused" and outcome["tag"] is None
    with pytest.raises(ReleaseError, match="not a fast-forward"):
        advance_branch(project, "nas", side)
    with pytest.raises(ReleaseError, match="not a fast-forward"):
        advance_branch(project, "nas", SEEN["c1"])  # backwards
    assert git(project, "rev-parse", "release/nas").strip() == SEEN["c2"]


def test_8_one_host_of_a_role_is_pinned_not_released(lab: LabState, project: Path) -> None:
    proc = deploy(lab, project, "--limit", "nas-1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # release targets are roles: part of a role gets pins, no tag and no branch of its own
    assert list_tags(project, "nas-1") == []
    assert git(project, "branch", "--list", "release/nas-1").strip() == ""
    assert "role nas: not released (the run covered 1 of 2 hosts" in proc.stderr
    assert nas_tags(project) == [SEEN["tag1"], SEEN["tag2"]]
    assert running(lab, "nas-1") == SEEN["closures2"]["nas-1"]
    # a no-op redeploy of the whole role tags nothing again
    proc = deploy(lab, project, "--limit", "nas")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert nas_tags(project) == [SEEN["tag1"], SEEN["tag2"]]
    # and releases can be switched off for a run: pins as usual, no refs
    before = pins(lab, "nas-2")
    proc = deploy(lab, project, "--limit", "nas-2", "--data", "release=off")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "release: none: --data release=off" in proc.stderr
    assert list_tags(project, "nas-2") == [] and pins(lab, "nas-2")[-1] not in before


def test_9_rollback_previous_returns_to_the_last_other_known_good(lab: LabState,
                                                                 project: Path) -> None:
    assert running(lab, "nas-1") == SEEN["closures2"]["nas-1"]
    logs = {b: build_logs(lab, b) for b in ("builder-1", "cloud-builder-1", "nas-1")}
    proc = nixify(lab, project, "rollback", "--previous", "--limit", "nas-1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "to=" not in proc.stderr.splitlines()[0]
    # one step back in history: the side branch's closure, deployed before test 8's
    assert running(lab, "nas-1") == SEEN["side"]["nas-1"]
    assert {b: build_logs(lab, b) for b in logs} == logs
    rc, hosts = status(lab, project, "--limit", "nas-1")
    kg = hosts["nas-1"]["known_good"]
    assert rc == 0 and kg["closure"] == SEEN["side"]["nas-1"]
    assert kg["tag"] is None  # the side branch's release was refused
    # --previous steps back through history (nixos-rebuild --rollback): a second one
    # goes on to tag1's closure, it does not go forward again to test 8's
    proc = nixify(lab, project, "rollback", "--previous", "--limit", "nas-1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert running(lab, "nas-1") == SEEN["closures1"]["nas-1"]
    rc, hosts = status(lab, project, "--limit", "nas-1")
    assert rc == 0 and hosts["nas-1"]["known_good"]["tag"] == SEEN["tag1"]
