"""A small typed wrapper around the git CLI, with errors that name the repo."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from nixify.errors import NixifyError


class GitError(NixifyError):
    """A git command failed."""

    exit_code = 1


def git(
    repo: Path,
    *args: str,
    check: bool = True,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
    )
    if check and proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
        raise GitError(f"{repo}: git {' '.join(args[:2])}: {detail}")
    return proc.stdout.strip() if check else proc.stdout


def git_ok(repo: Path, *args: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True).returncode == 0


def config_get(repo: Path, key: str) -> str | None:
    proc = subprocess.run(
        ["git", "-C", str(repo), "config", "--get", key], capture_output=True, text=True
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def config_all(repo: Path, key: str) -> list[str]:
    proc = subprocess.run(
        ["git", "-C", str(repo), "config", "--get-all", key], capture_output=True, text=True
    )
    return [v for v in proc.stdout.splitlines() if v.strip()] if proc.returncode == 0 else []


def toplevel(path: Path) -> Path:
    return Path(git(path, "rev-parse", "--show-toplevel"))


def current_branch(repo: Path) -> str | None:
    proc = subprocess.run(
        ["git", "-C", str(repo), "symbolic-ref", "--short", "-q", "HEAD"],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None
