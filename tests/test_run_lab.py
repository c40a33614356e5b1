"""The run around the gates, on a real lab: a bad `--data` stops before any
connection, the comma form of `--limit` works, and a run in which every host
fails before gate 1 (here: none answers) still writes its report and summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from labkit import project_copy, pyinfra

from nixify.lab import LabState, control

pytestmark = pytest.mark.lab


def test_the_run_edges(make_lab: Callable[[str, int, str], LabState], tmp_path: Path) -> None:
    state = make_lab("run", 6, "127.0.46")
    project = project_copy(tmp_path / "project")
    hosts = {h.name: h for h in state.hosts}

    # a typo in --data: refused in one line naming the key, before any connection
    proc = pyinfra(state, "-y", "inventories/lab.py", "deploy.py", "--data", "mdoe=dry",
                   cwd=project)
    assert proc.returncode != 0
    assert "--data mdoe=dry: unknown key 'mdoe'" in proc.stdout + proc.stderr
    assert "Connecting to hosts" not in proc.stdout + proc.stderr
    assert not (project / "reports").exists()
    proc = pyinfra(state, "-y", "inventories/lab.py", "deploy.py", "--data", "keep_pins=abc",
                   cwd=project)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    assert "--data keep_pins=abc: must be a whole number" in proc.stdout + proc.stderr

    # the Ansible habit: --limit nas,laptop deploys exactly those roles
    proc = pyinfra(state, "-y", "inventories/lab.py", "deploy.py", "--limit", "nas,laptop",
                   "--data", "mode=dry", cwd=project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((project / "reports" / "latest.json").read_text())
    assert sorted(report["hosts"]) == sorted(n for n, h in hosts.items()
                                             if h.role in ("nas", "laptop"))
    assert report["counts"] == {"dry-run": len(report["hosts"])}
    # a limit that matches nothing is an error
    proc = pyinfra(state, "-y", "inventories/lab.py", "deploy.py", "--limit", "nsa",
                   cwd=project)
    assert proc.returncode != 0 and "--limit nsa: matches no role or host" in proc.stderr

    # every host down: no operation runs, the report and the summary are still written
    for name in hosts:
        control.stop_host(Path(state.dir), name)
    (project / "reports" / "latest.json").unlink()
    proc = pyinfra(state, "-y", "inventories/lab.py", "deploy.py", cwd=project)
    assert proc.returncode != 0
    report = json.loads((project / "reports" / "latest.json").read_text())
    assert set(report["hosts"]) == set(hosts)
    assert report["counts"] == {"unreachable": len(hosts)}
    for rep in report["hosts"].values():
        assert rep["status"] == "unreachable" and rep["reason"].startswith(
            "unreachable at connect"), rep
    assert f"0/{len(hosts)} hosts passed every gate they ran" in proc.stderr
