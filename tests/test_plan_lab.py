"""`nixify plan` on a real lab (8 hosts, real Nix, real SSH): gates 1-3 everywhere,
nothing activated, changes grouped by cause; a saved plan refuses a changed closure."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from labkit import VENV_BIN, edit, git, latest_report, pins, project_copy, pyinfra, ssh

from nixify.lab import LabState

pytestmark = pytest.mark.lab

TIMES = "\u00d7"


def host_state(lab: LabState, name: str) -> tuple[str, str, list[str], bool]:
    """Running system, system profile, known-good pins, deploy lock present."""
    out = ssh(lab, name, "readlink -f /run/current-system; readlink -f "
              "/nix/var/nix/profiles/system; test -d /var/lib/nixify/deploy.lock && echo locked;"
              " true").stdout.split()
    return out[0], out[1], pins(lab, name), "locked" in out


def plan(lab: LabState, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "nixify"), "plan", "--inventory", "inventories/lab.py", *args],
        cwd=project, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, NIXIFY_LAB_DIR=lab.dir, NIXIFY_REPO=str(project)),
    )


def test_plan_changes_nothing_groups_by_cause_and_guards_the_deploy(
    make_lab: Callable[[str, int, str], LabState], tmp_path: Path
) -> None:
    lab = make_lab("plan", 8, "127.0.47")
    project = project_copy(tmp_path / "project")
    roles = {h.name: h.role for h in lab.hosts}
    wsl = sorted(n for n, r in roles.items() if r == "wsl_dev")
    laptops = sorted(n for n, r in roles.items() if r == "laptop")
    assert len(wsl) == 2 and len(laptops) == 1, roles
    # the fleet as deployed by nixify (its builders hold the running systems' derivations)
    proc = pyinfra(lab, "-y", "inventories/lab.py", "deploy.py", cwd=project)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    packages = project / "fleet" / "packages.nix"
    edit(packages, 'pname = "nixos-wsl-utils"; version = "2405.5.4"',
         'pname = "nixos-wsl-utils"; version = "2405.5.5"')
    edit(packages, 'pname = "tlp"; version = "1.6.1"', 'pname = "tlp"; version = "1.6.2"')
    git(project, "commit", "-qam", "feat(wsl_dev,laptop): nixos-wsl-utils 2405.5.5, tlp 1.6.2")
    before = {h.name: host_state(lab, h.name) for h in lab.hosts}

    # an expectation that leaves tlp out: the plan says so, exit 1
    proc = plan(lab, project, "--expect", "nixos-wsl-utils")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("Plan on 8 hosts: nothing activated on any host (3 would change, "
                          "5 unchanged)"), out
    assert (f"nixos-wsl-utils 2405.5.4 → 2405.5.5 (root cause: version): 2 hosts — "
            f"wsl_dev {TIMES}2") in out, out
    assert f"tlp 1.6.1 → 1.6.2 (root cause: version): 1 host — laptop {TIMES}1" in out, out
    assert "Changes by cause (2):" in out, out
    assert "Drift against expect=nixos-wsl-utils: NOT as declared (1 host)" in out, out
    assert f"{laptops[0]}: package changed tlp" in out, out
    assert "Would not deploy: none" in out and "does NOT match: drift." in out, out
    for name in wsl + laptops:
        assert f"{name} ({roles[name]}): causes #" in out, out
    # nothing activated, no lock taken or left, no pin written: on every host
    assert {h.name: host_state(lab, h.name) for h in lab.hosts} == before

    # the declared expectation matches: exit 0; the saved plan is the --json document
    saved = tmp_path / "plan.json"
    proc = plan(lab, project, "--expect", "nixos-wsl-utils,tlp", "--json", "--out", str(saved))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc == json.loads(saved.read_text())
    assert doc["ok"] is True and doc["drift"]["ok"] is True and doc["skipped"] == {}
    assert [(c["title"], c["root_cause"], c["roles"]) for c in doc["causes"]] == [
        ("nixos-wsl-utils 2405.5.4 → 2405.5.5", "version", {"wsl_dev": 2}),
        ("tlp 1.6.1 → 1.6.2", "version", {"laptop": 1}),
    ]
    assert all(doc["hosts"][n]["status"] == "unchanged" for n in roles
               if n not in wsl + laptops)
    assert {h.name: host_state(lab, h.name) for h in lab.hosts} == before

    # the fleet changes after the plan: the deploy refuses the laptop, deploys the rest
    edit(packages, 'pname = "tlp"; version = "1.6.2"', 'pname = "tlp"; version = "1.6.3"')
    git(project, "commit", "-qam", "feat(laptop): tlp 1.6.3")
    proc = pyinfra(lab, "-y", "inventories/lab.py", "deploy.py", "--limit", "wsl_dev",
                   "--limit", "laptop", "--data", f"plan={saved}", cwd=project)
    assert proc.returncode != 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = latest_report(project)["hosts"]
    laptop = rep[laptops[0]]
    assert laptop["status"] == "failed", laptop
    assert laptop["gates"]["switch-test"]["result"] == "failed"
    reason = laptop["reason"]
    assert "refused by the plan" in reason and "is not the planned" in reason, reason
    assert doc["hosts"][laptops[0]]["closure"] in reason and laptop["closure"] in reason
    assert host_state(lab, laptops[0]) == before[laptops[0]]  # nothing activated
    for name in wsl:
        assert rep[name]["status"] == "deployed", rep[name]
        assert rep[name]["closure"] == doc["hosts"][name]["closure"]
        assert host_state(lab, name)[0] == doc["hosts"][name]["closure"]

    # a plan file that is not one stops the deploy before any connection, naming it
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    proc = pyinfra(lab, "-y", "inventories/lab.py", "deploy.py", "--limit", laptops[0],
                   "--data", f"plan={bad}", cwd=project)
    assert proc.returncode != 0
    assert f"--data plan={bad}: not a plan" in proc.stdout + proc.stderr
