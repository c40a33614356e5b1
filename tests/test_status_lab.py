"""`nixify status` on a real lab: a host whose known-good records include one with a
field this nixify does not know and a corrupt file still shows, the skipped file is
named with its host, and rollback to the record still works; the table, "reboot
pending" after a switch, and a closed pipe."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from labkit import REPO, VENV_BIN, edit, git, latest_report, project_copy, pyinfra, running, ssh

from nixify.lab import LabState

pytestmark = pytest.mark.lab

HOST = "wsl-dev-1"  # a 4-host lab: builder-1, cloud-builder-1, wsl-dev-1, laptop-1
RECORDS = "/var/lib/nixify/known-good"


def nixify(lab: LabState, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NIXIFY_LAB_DIR=lab.dir, NIXIFY_INVENTORY="inventories/lab.py")
    env.pop("NIXIFY_REPO", None)
    return subprocess.run([str(VENV_BIN / "nixify"), *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def deploy(lab: LabState, project: Path) -> tuple[str, str]:
    """Deploy HOST; its newest known-good record and closure."""
    proc = pyinfra(lab, "-y", "inventories/lab.py", "deploy.py", "--limit", HOST, cwd=project)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = sorted(n for n in ssh(lab, HOST, f"ls {RECORDS}").stdout.split()
                   if n.endswith(".json"))
    return names[-1].removesuffix(".json"), running(lab, HOST)


def test_status_names_skipped_records_and_rollback_still_works(
    make_lab: Callable[[str, int, str], LabState], tmp_path: Path
) -> None:
    lab = make_lab("status", 4, "127.0.44")
    project = project_copy(tmp_path / "project")
    shutil.copy2(REPO / "status.py", project / "status.py")
    git(project, "add", "status.py")
    git(project, "commit", "-qm", "chore: status deploy")

    first = deploy(lab, project)
    edit(project / "fleet" / "default.nix", 'release ? "26.11"', 'release ? "26.12"')
    git(project, "commit", "-qam", "feat: 26.12")
    second = deploy(lab, project)
    assert first[1] != second[1]
    record, name = first[0], f"{first[0]}.json"

    # after a switch: the table, and booted != running is a pending reboot, not drift
    proc = nixify(lab, project, "status", "--limit", HOST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header, row, summary = proc.stdout.splitlines()
    assert header.split() == ["HOST", "ROLE", "STATE", "RUNNING", "KNOWN-GOOD", "TAG", "PINS",
                              "NOTES"]
    assert re.match(rf"{HOST} +wsl_dev +ok +\S+ +{second[0]} \(deploy\) ", row), row
    assert row.endswith("reboot pending") and "DRIFT" not in row
    assert summary == "1/1 hosts answered; 0 with drift; 1 reboot pending"

    # plant: the record gains a field a newer nixify would write; a corrupt record file
    doc: dict[str, Any] = json.loads(ssh(lab, HOST, f"cat {RECORDS}/{name}").stdout)
    doc["written_by_a_newer_nixify"] = {"colour": "blue"}
    blob = json.dumps(doc)
    ssh(lab, HOST, f"printf '%s' '{blob}' > {RECORDS}/{name} && "
                   f"printf 'not a record {{' > {RECORDS}/20991231T235959Z-corrupt.json")

    proc = nixify(lab, project, "status", "--json", "--limit", HOST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["schema"] == 1
    (h,) = out["hosts"]
    assert h["host"] == HOST and h["reachable"] and h["error"] is None
    assert h["known_good"]["record"] == second[0] and h["running_is_known_good"] is True
    assert [p["record"] for p in h["pins"]] == [record, second[0]]
    assert h["drift"] == [] and h["reboot_pending"] is True
    assert len(h["skipped"]) == 1 and h["skipped"][0].startswith(
        f"{RECORDS}/20991231T235959Z-corrupt.json: ")

    proc = nixify(lab, project, "status")  # every host of the lab
    assert proc.returncode == 1  # laptop-1 was never deployed: no known-good pin
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("HOST ")
    rows = {line.split()[0]: line for line in lines[1:5]}
    assert sorted(rows) == ["builder-1", "cloud-builder-1", "laptop-1", "wsl-dev-1"]
    assert "1 record skipped" in rows[HOST]
    assert "no known-good pin" in rows["laptop-1"]
    assert f"{HOST}: skipped record {RECORDS}/20991231T235959Z-corrupt.json: " in proc.stdout

    # a closed pipe: no traceback
    shell = subprocess.run(
        f"{VENV_BIN / 'nixify'} status | head -1", shell=True, cwd=project, capture_output=True,
        text=True, timeout=300,
        env=dict(os.environ, NIXIFY_LAB_DIR=lab.dir, NIXIFY_INVENTORY="inventories/lab.py"),
    )
    assert shell.stdout.split() == ["HOST", "ROLE", "STATE", "RUNNING", "KNOWN-GOOD", "TAG",
                                    "PINS", "NOTES"]
    assert "Traceback" not in shell.stderr and "BrokenPipe" not in shell.stderr, shell.stderr

    # `nixify diff HOST:current` reaches the host with the inventory's connection data
    proc = nixify(lab, project, "diff", f"{HOST}:current", f"{HOST}:{first[1]}", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)

    # rollback to the record with the unknown field, past the corrupt file
    proc = pyinfra(lab, "-y", "inventories/lab.py", "rollback.py", "--limit", HOST,
                   "--data", f"to={record}", cwd=project)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "20991231T235959Z-corrupt.json" in proc.stdout + proc.stderr
    rep = latest_report(project)
    assert rep["kind"] == "rollback" and rep["hosts"][HOST]["status"] == "deployed"
    assert running(lab, HOST) == first[1]
