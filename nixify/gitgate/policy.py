"""Python's door to the policy script: the same ``gate.sh`` the hooks run."""

from __future__ import annotations

import os
import subprocess
from importlib import resources
from pathlib import Path

GATE_SCRIPT_NAME = "nixify-gate"


def gate_script_text() -> str:
    return resources.files("nixify.gitgate").joinpath("gate.sh").read_text(encoding="utf-8")


def gate_script_path() -> Path:
    return Path(str(resources.files("nixify.gitgate").joinpath("gate.sh")))


def run_gate(repo: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the policy script in ``repo`` with ``args``; output captured."""
    return subprocess.run(
        ["sh", str(gate_script_path()), *args],
        cwd=repo,
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )


def branch_refusal(repo: Path, branch: str) -> str | None:
    """None when the actor may commit to ``branch``; else the gate's explanation."""
    proc = run_gate(repo, "check-branch", branch)
    return None if proc.returncode == 0 else proc.stderr.strip()


def actor_role(repo: Path) -> tuple[str, str, str]:
    """("operator"|"agent", actor name or "", why a named operator is not proven)."""
    proc = run_gate(repo, "role")
    role, _, name = proc.stdout.strip().partition(" ")
    why = proc.stderr.strip().removeprefix("nixify-gate: ")
    return (role if role in ("operator", "agent") else "agent"), name, why
