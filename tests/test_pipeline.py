"""The deploy-and-validate pipeline end to end: 15 real hosts, real Nix, real SSH.

The tests run in order on one lab and one project repository: each deploy
starts from what the previous one left, as deploys do.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import (
    VENV_BIN,
    bring_up,
    edit,
    git,
    latest_report,
    pins,
    project_copy,
    pyinfra,
    running,
    ssh,
)

from nixify.lab import LabState, control

pytestmark = pytest.mark.lab

CONSTRAINED = ("wsl_dev", "laptop", "edge_ml")
GATES = ["build", "diff", "dry-activate", "switch-test", "known-good"]


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    state = bring_up("pipeline", 15, "127.0.7")
    yield state
    control.down(Path(state.dir))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_copy(tmp_path_factory.mktemp("pipeline") / "project")


def deploy(
    lab: LabState,
    project: Path,
    *args: str,
    script: str = "deploy.py",
) -> subprocess.CompletedProcess[str]:
    return pyinfra(lab, "-y", "inventories/lab.py", script, *args, cwd=project)


def spawn_deploy(
    lab: LabState, project: Path, *args: str, output: int = subprocess.PIPE
) -> subprocess.Popen[str]:
    """A deploy running in the background (to overlap with another, or to kill)."""
    return subprocess.Popen(
        [str(VENV_BIN / "pyinfra"), "-y", "inventories/lab.py", "deploy.py", *args],
        cwd=project,
        stdout=output,
        stderr=output,
        text=True,
        env=dict(os.environ, NIXIFY_LAB_DIR=lab.dir),
    )


def wait_for_lock(lab: LabState, host: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ssh(lab, host, "test -d /var/lib/nixify/deploy.lock", check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{host}: no deploy lock appeared within {timeout}s")


def build_logs(lab: LabState, host: str) -> int:
    out = ssh(lab, host, "find /nix/var/log/nix/drvs -type f 2>/dev/null | wc -l").stdout
    return int(out.strip())


def test_1_full_deploy_of_every_host(lab: LabState, project: Path) -> None:
    edit(project / "fleet" / "default.nix", 'release ? "26.11"', 'release ? "26.12"')
    git(project, "commit", "-qam", "feat: release 26.12")
    before = {h.name: running(lab, h.name) for h in lab.hosts}
    proc = deploy(lab, project)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = latest_report(project)
    assert report["kind"] == "deploy" and report["mode"] == "switch"
    assert report["commit"] == git(project, "rev-parse", "HEAD").strip()
    assert report["dirty"] is False
    assert sorted(report["hosts"]) == sorted(h.name for h in lab.hosts)
    for h in lab.hosts:
        rep = report["hosts"][h.name]
        assert rep["status"] == "deployed", (h.name, rep)
        assert [g for g in GATES if rep["gates"][g]["result"] == "passed"] == GATES
        closure = rep["closure"]
        assert closure != before[h.name] and closure.endswith(f"{h.name}-26.12")
        out = ssh(lab, h.name, "readlink -f /run/current-system /nix/var/nix/profiles/system")
        assert out.stdout.split() == [closure, closure]
        assert pins(lab, h.name) == [f"{rep['known_good']}.json"]
        root = ssh(lab, h.name, f"readlink -f /nix/var/nix/gcroots/nixify/{rep['known_good']}")
        assert root.stdout.strip() == closure
        record = json.loads(ssh(lab, h.name, "cat /var/lib/nixify/known-good/*.json").stdout)
        assert record["closure"] == closure and record["commit"] == report["commit"]
        assert record["dirty"] is False and set(record["gates"]) >= {"build", "switch-test"}
        # a builder built it, never the host itself
        assert rep["builder"] in ("builder-1", "cloud-builder-1") and rep["builder"] != h.name
        built_on = rep["gates"]["build"]["evidence"]["built_on"]
        assert built_on and set(built_on) <= {"builder-1", "cloud-builder-1"}, built_on
    assert list((project / "reports").glob("deploy-*.json"))
    # each host's secrets were decrypted on the host, 0400, and never shown
    fleet = {h.name: h for h in lab.hosts}
    from nixify.inventory import load_fleet
    from nixify.lab import fleet_for_state

    declared = fleet_for_state(load_fleet(project / "inventories" / "hosts.yaml"), lab)
    everything = proc.stdout + proc.stderr + (project / "reports" / "latest.json").read_text()
    for name in fleet:
        for secret in declared[name].secrets:
            out = ssh(lab, name, f"stat -c %a /run/secrets/{secret} && cat /run/secrets/{secret}")
            mode, *body = out.stdout.splitlines()
            assert mode == "400", (name, secret)
            values = [
                ln.split(":", 1)[1].strip() for ln in body if ":" in ln and not ln.startswith("#")
            ]
            assert values and all(len(v) >= 16 for v in values), (name, secret, len(values))
            for value in values:
                assert value not in everything, (name, secret)


def test_2_constrained_hosts_built_nothing_builders_did(lab: LabState) -> None:
    for h in lab.hosts:
        if h.role in CONSTRAINED:
            assert build_logs(lab, h.name) == 0, h.name
            drvs = ssh(lab, h.name, "ls /nix/store | grep -c '\\.drv$'; true").stdout.strip()
            assert drvs == "0", h.name
    assert build_logs(lab, "builder-1") > 20  # every system but its own, and their packages
    assert build_logs(lab, "cloud-builder-1") >= 1  # builder-1's system


def test_3_a_version_bump_for_one_role_changes_only_that_role(
    lab: LabState,
    project: Path,
) -> None:
    edit(
        project / "fleet" / "packages.nix",
        'pname = "samba"; version = "4.20.2"',
        'pname = "samba"; version = "4.20.3"',
    )
    git(project, "commit", "-qam", "feat(nas): samba 4.20.3")
    before = {h.name: running(lab, h.name) for h in lab.hosts}
    proc = deploy(lab, project, "--limit", "nas")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = latest_report(project)
    assert sorted(report["hosts"]) == ["nas-1", "nas-2", "nas-3"]
    for h in lab.hosts:
        after = running(lab, h.name)
        if h.role == "nas":
            assert after != before[h.name]
            diff = report["hosts"][h.name]["gates"]["diff"]["evidence"]["diff"]
            bumped = [p for p in diff["packages"] if p["old_versions"] != p["new_versions"]]
            assert [(p["name"], p["old_versions"], p["new_versions"]) for p in bumped] == [
                ("samba", ["4.20.2"], ["4.20.3"])
            ]
            assert diff["added"] == [] and diff["removed"] == []
            # gate 2 names the root cause, as `nixify diff --rca` does: samba's version
            evidence = report["hosts"][h.name]["gates"]["diff"]["evidence"]
            assert "rca_note" not in evidence, evidence.get("rca_note")
            causes = evidence["rca"]["causes"]
            assert [c["package"] for c in causes] == ["samba"], causes
            fields = {(ch["field"], ch["old"], ch["new"]) for ch in causes[0]["changes"]}
            assert ("version", "4.20.2", "4.20.3") in fields, fields
            assert evidence["rca"]["unexplained"] == []
        else:
            assert after == before[h.name], h.name
    assert "samba" in proc.stderr and "4.20.2" in proc.stderr and "4.20.3" in proc.stderr
    # and a declared expectation passes without accept_drift
    edit(project / "fleet" / "packages.nix", 'version = "4.20.3"', 'version = "4.20.4"')
    git(project, "commit", "-qam", "feat(nas): samba 4.20.4")
    proc = deploy(lab, project, "--limit", "nas", "--data", "expect=samba")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name, rep in latest_report(project)["hosts"].items():
        assert rep["gates"]["diff"]["evidence"]["drift"]["ok"], name


def test_4_a_unit_that_fails_returns_the_host_to_known_good(
    lab: LabState,
    project: Path,
) -> None:
    host_file = project / "fleet" / "hosts" / "nas-2.nix"
    host_file.write_text('{ role = "nas"; units = { "broken.service" = { fails = true; }; }; }\n')
    git(project, "commit", "-qam", "feat(nas-2): a unit that fails")
    good = running(lab, "nas-2")
    pins_before = pins(lab, "nas-2")
    others = {n: (running(lab, n), pins(lab, n)) for n in ("nas-1", "nas-3")}
    proc = deploy(lab, project, "--limit", "nas")
    assert proc.returncode != 0
    rep = latest_report(project)["hosts"]
    assert rep["nas-2"]["gates"]["switch-test"]["result"] == "failed"
    assert rep["nas-2"]["status"] == "rolled-back"
    assert "known-good" not in rep["nas-2"]["gates"]
    assert running(lab, "nas-2") == good
    assert ssh(lab, "nas-2", "readlink -f /nix/var/nix/profiles/system").stdout.strip() == good
    assert pins(lab, "nas-2") == pins_before
    assert (
        ssh(
            lab, "nas-2", "cat /run/nixify-lab/units/broken.service 2>/dev/null; true"
        ).stdout.strip()
        == ""
    )
    # the other hosts of the role went through every gate
    for name, (closure, old_pins) in others.items():
        assert rep[name]["status"] == "deployed"
        assert running(lab, name) == closure  # nothing changed for them
        # pins are per closure: the same closure's record is refreshed, not duplicated
        new_pins = pins(lab, name)
        assert len(new_pins) == len(old_pins) and new_pins != old_pins
    assert "nas-2" in proc.stderr and "returned" in proc.stderr
    host_file.write_text('{ role = "nas"; }\n')
    git(project, "commit", "-qam", "fix(nas-2): drop the failing unit")


def test_5_pins_survive_gc_and_rollback_rebuilds_nothing(lab: LabState, project: Path) -> None:
    # nas-1 has two known-good pins now (26.12, then samba 4.20.3)
    records = [
        json.loads(ssh(lab, "nas-1", f"cat /var/lib/nixify/known-good/{p}").stdout)
        for p in pins(lab, "nas-1")
    ]
    closures = [r["closure"] for r in records]
    assert len(set(closures)) >= 2
    for h in lab.hosts:
        ssh(lab, h.name, "nix-collect-garbage -d >/dev/null 2>&1")
    for h in lab.hosts:
        for p in pins(lab, h.name):
            rec = json.loads(ssh(lab, h.name, f"cat /var/lib/nixify/known-good/{p}").stdout)
            assert (
                ssh(
                    lab,
                    h.name,
                    f"test -e {rec['closure']}/bin/switch-to-configuration",
                    check=False,
                ).returncode
                == 0
            ), (h.name, rec["closure"])
    logs = {b: build_logs(lab, b) for b in ("builder-1", "cloud-builder-1")}
    current = running(lab, "nas-1")
    previous = [c for c in closures if c != current][-1]
    proc = deploy(lab, project, "--limit", "nas-1", script="rollback.py")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert running(lab, "nas-1") == previous
    assert {b: build_logs(lab, b) for b in logs} == logs
    rep = latest_report(project)
    assert rep["kind"] == "rollback"
    assert rep["hosts"]["nas-1"]["status"] == "deployed"
    assert "build" not in rep["hosts"]["nas-1"]["gates"]


def test_6_a_second_concurrent_deploy_is_refused_with_the_holder(
    lab: LabState,
    project: Path,
) -> None:
    host_file = project / "fleet" / "hosts" / "nas-3.nix"
    host_file.write_text('{ role = "nas"; settings = { activationSeconds = 4; }; }\n')
    git(project, "commit", "-qam", "feat(nas-3): slow activation")
    first = spawn_deploy(lab, project, "--limit", "nas-3")
    try:
        wait_for_lock(lab, "nas-3")
        second = deploy(lab, project, "--limit", "nas-3")
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out[-2000:] + err[-2000:]
    assert second.returncode != 0
    assert "deploy lock held by" in second.stderr and f"pid {first.pid}" in second.stderr
    assert ssh(lab, "nas-3", "test -d /var/lib/nixify/deploy.lock", check=False).returncode == 1


def test_7_a_killed_deploy_leaves_a_stale_lock_that_is_detected(
    lab: LabState,
    project: Path,
) -> None:
    killed = spawn_deploy(
        lab, project, "--limit", "nas-3", "--data", "mode=test", output=subprocess.DEVNULL
    )
    wait_for_lock(lab, "nas-3")
    killed.kill()
    killed.wait()
    assert ssh(lab, "nas-3", "test -d /var/lib/nixify/deploy.lock", check=False).returncode == 0
    (project / "fleet" / "hosts" / "nas-3.nix").write_text('{ role = "nas"; }\n')
    git(project, "commit", "-qam", "fix(nas-3): fast activation")
    proc = deploy(lab, project, "--limit", "nas-3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stale deploy lock" in proc.stderr and f"pid {killed.pid}" in proc.stderr


def test_8_dry_mode_and_pyinfra_dry_change_nothing(lab: LabState, project: Path) -> None:
    edit(
        project / "fleet" / "packages.nix",
        'pname = "tmux"; version = "3.4"',
        'pname = "tmux"; version = "3.5"',
    )
    git(project, "commit", "-qam", "feat(dev): tmux 3.5")
    names = [h.name for h in lab.hosts if h.role in ("wsl_dev", "laptop")]
    before = {n: (running(lab, n), pins(lab, n)) for n in names}
    profile = {n: ssh(lab, n, "readlink /nix/var/nix/profiles/system").stdout for n in names}
    proc = deploy(lab, project, "--limit", "wsl_dev", "--limit", "laptop", "--data", "mode=dry")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = latest_report(project)["hosts"]
    assert sorted(rep) == sorted(names)
    for n in names:
        assert rep[n]["status"] == "dry-run"
        assert rep[n]["gates"]["dry-activate"]["result"] == "passed"
        assert "switch-test" not in rep[n]["gates"] and "known-good" not in rep[n]["gates"]
        assert (running(lab, n), pins(lab, n)) == before[n]
        assert ssh(lab, n, "readlink /nix/var/nix/profiles/system").stdout == profile[n]
        assert ssh(lab, n, "test -d /var/lib/nixify/deploy.lock", check=False).returncode == 1
    report_before = (project / "reports" / "latest.json").read_text()
    proc = pyinfra(
        lab, "inventories/lab.py", "deploy.py", "--limit", "laptop", "--dry", cwd=project
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for n in names:
        assert (running(lab, n), pins(lab, n)) == before[n]
    assert (project / "reports" / "latest.json").read_text() == report_before


def test_9_a_limit_matching_nothing_is_an_error(lab: LabState, project: Path) -> None:
    proc = deploy(lab, project, "--limit", "mainframe")
    assert proc.returncode != 0
    assert "--limit mainframe: matches no role or host" in proc.stdout + proc.stderr


def test_10_builder_down_falls_back_then_constrained_hosts_are_skipped(
    lab: LabState, project: Path
) -> None:
    control.stop_host(Path(lab.dir), "builder-1")
    try:
        proc = deploy(lab, project, "--limit", "wsl-dev-1")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        rep = latest_report(project)["hosts"]["wsl-dev-1"]
        assert rep["builder"] == "cloud-builder-1" and rep["status"] == "deployed"
        control.stop_host(Path(lab.dir), "cloud-builder-1")
        try:
            logs = {n: build_logs(lab, n) for n in ("wsl-dev-2", "laptop-1")}
            proc = deploy(lab, project, "--limit", "wsl-dev-2", "--limit", "laptop-1")
            assert proc.returncode != 0
            rep = latest_report(project)["hosts"]
            for n in ("wsl-dev-2", "laptop-1"):
                assert rep[n]["status"] == "skipped"
                assert "no builder reachable" in rep[n]["reason"]
                assert "builder-1" in rep[n]["reason"] and "cloud-builder-1" in rep[n]["reason"]
                assert build_logs(lab, n) == logs[n]
                assert f"[{n}] gate build: SKIPPED: no builder reachable" in proc.stderr
            # the summary lists them among the hosts that did not pass, with the reason
            summary = proc.stderr.split("did not pass", 1)[1]
            assert "wsl-dev-2" in summary and "laptop-1" in summary
            assert "skipped" in summary and "no builder reachable" in summary
        finally:
            control.start_host(Path(lab.dir), "cloud-builder-1")
    finally:
        control.start_host(Path(lab.dir), "builder-1")


def test_11_the_same_deploy_runs_on_the_real_fleet_inventory(
    lab: LabState, project: Path, tmp_path: Path
) -> None:
    """inventories/fleet.py with a private address map (here: the lab's addresses)."""
    import yaml

    # every host key pinned in the map (nixify writes the known_hosts from them and
    # checks strictly; a host without one would be refused at load)
    amap = {
        h.name: {
            "address": h.address,
            "port": h.port,
            "key_file": lab.operator_key,
            "host_key": " ".join(Path(h.host_key_pub).read_text().split()[:2]),
        }
        for h in lab.hosts
    }
    addresses = tmp_path / "addresses.yaml"
    addresses.write_text(yaml.safe_dump(amap))
    edit(
        project / "fleet" / "packages.nix",
        'pname = "restic"; version = "0.16.4"',
        'pname = "restic"; version = "0.16.5"',
    )
    git(project, "commit", "-qam", "feat(nas): restic 0.16.5")
    # without the fleet's secrets the host fails clearly, naming the file
    pins_before = pins(lab, "nas-3")

    def fleet_deploy(*extra: str) -> subprocess.CompletedProcess[str]:
        return pyinfra(
            lab,
            "-y",
            "inventories/fleet.py",
            "deploy.py",
            "--limit",
            "nas-3",
            *extra,
            cwd=project,
            env={"NIXIFY_ADDRESSES": str(addresses), "NIXIFY_STATE_DIR": str(tmp_path)},
        )

    proc = fleet_deploy()
    assert proc.returncode != 0
    reason = latest_report(project)["hosts"]["nas-3"]["reason"]
    assert reason.startswith("gate secrets:") and "common/ntp.yaml" in reason, reason
    assert "internal exception" not in proc.stdout + proc.stderr
    assert pins(lab, "nas-3") == pins_before  # no known-good without its secrets
    proc = fleet_deploy("--data", f"secrets_dir={lab.dir}/secrets")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = latest_report(project)["hosts"]
    assert list(rep) == ["nas-3"] and rep["nas-3"]["status"] == "deployed"
    assert running(lab, "nas-3") == rep["nas-3"]["closure"]
    assert "restic-0.16.5" in ssh(lab, "nas-3", "cat /run/current-system/packages").stdout
