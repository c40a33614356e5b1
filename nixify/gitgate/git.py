"""The gate's git helpers: thin users of ``nixify.git`` raising the gate's ``GitError``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nixify import git as _git
from nixify.git import run_git


class GitError(_git.GitError):
    """A git command failed."""

    exit_code = 1


def git(
    repo: Path,
    *args: str,
    check: bool = True,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    return _git.git(repo, *args, check=check, stdin=stdin, env=env, error=GitError)


def git_ok(repo: Path, *args: str) -> bool:
    return _git.git_ok(repo, *args)


def config_get(repo: Path, key: str) -> str | None:
    proc = run_git(repo, ("config", "--get", key))
    return proc.stdout.strip() if proc.returncode == 0 else None


def config_all(repo: Path, key: str) -> list[str]:
    proc = run_git(repo, ("config", "--get-all", key))
    return [v for v in proc.stdout.splitlines() if v.strip()] if proc.returncode == 0 else []


def toplevel(path: Path) -> Path:
    return Path(git(path, "rev-parse", "--show-toplevel"))


def current_branch(repo: Path) -> str | None:
    proc = run_git(repo, ("symbolic-ref", "--short", "-q", "HEAD"))
    return proc.stdout.strip() if proc.returncode == 0 else None
