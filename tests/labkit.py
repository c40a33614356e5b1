"""Helpers for tests that use the lab: bring one up, run ssh and pyinfra on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nixify import paths
from nixify.inventory import load_fleet
from nixify.lab import LabState, control

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
LAB_ROOT = Path(os.environ.get("NIXIFY_TEST_LAB_ROOT", "/var/tmp/nixify-test-labs"))
KEEP = os.environ.get("NIXIFY_TEST_KEEP_LAB") == "1"


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (as CI has); deselect them with -m 'not lab'")


def bring_up(name: str, hosts: int, net: str) -> LabState:
    """Bring up (or reuse) the lab ``name`` on ``net`` (``127.0.X``). With
    ``NIXIFY_TEST_NET_PREFIX=127.N`` every test lab moves to ``127.N.X``, so two
    test runs can share a machine."""
    _require_root()
    prefix = os.environ.get("NIXIFY_TEST_NET_PREFIX")
    if prefix:
        net = f"{prefix}.{net.rsplit('.', 1)[1]}"
    return control.up(
        load_fleet(paths.hosts_file(REPO)),
        hosts,
        LAB_ROOT / name,
        net,
        2222,
        paths.fleet_dir(REPO),
    )


def ssh(
    state: LabState, host: str, command: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` on a lab host over real SSH."""
    proc = subprocess.run(
        ["ssh", *state.ssh_args(host), command], capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{host}: {command!r} exited {proc.returncode}: {proc.stderr}")
    return proc


def pyinfra(
    state: LabState,
    *args: str,
    cwd: Path = REPO,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real pyinfra CLI against ``state``'s lab."""
    full_env = dict(os.environ, NIXIFY_LAB_DIR=state.dir, **(env or {}))
    return subprocess.run(
        [str(VENV_BIN / "pyinfra"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def project_copy(dest: Path) -> Path:
    """A git repository holding the project's deploy files, to change and deploy from."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("deploy.py", "rollback.py"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("inventories", "fleet"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / ".gitignore").write_text("reports/\n__pycache__/\n")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "chore: fleet")
    return dest


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.invalid",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.invalid")
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise AssertionError(f"git {args}: {proc.stderr}")
    return proc.stdout


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def latest_report(project: Path) -> dict:  # type: ignore[type-arg]
    import json

    return json.loads((project / "reports" / "latest.json").read_text())  # type: ignore[no-any-return]


def running(state: LabState, host: str) -> str:
    return ssh(state, host, "readlink -f /run/current-system").stdout.strip()


def pins(state: LabState, host: str) -> list[str]:
    out = ssh(state, host, "ls /var/lib/nixify/known-good 2>/dev/null; true").stdout.split()
    return sorted(n for n in out if n.endswith(".json"))
