"""The one way nixify runs git: typed, with errors that name the repository.

Subsystems raise their own error type (``GitError`` subclasses) by passing it as
``error``; everything else (quoting, environment, exit codes) is here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nixify.errors import NixifyError


class GitError(NixifyError):
    """A git command failed: names the repository, the command and git's message."""

    exit_code = 1


def run_git(
    repo: Path,
    args: Sequence[str],
    *,
    stdin: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    pre_args: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """``git [pre_args] -C repo args``; never raises for a non-zero exit."""
    text = not isinstance(stdin, bytes)
    proc = subprocess.run(
        ["git", *pre_args, "-C", str(repo), *args],
        input=stdin,
        capture_output=True,
        text=text,
        env=None if env is None else dict(env),
    )
    if not text:  # bytes in, text out (git's messages)
        return subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
    return proc


def run_git_bytes(
    repo: Path,
    args: Sequence[str],
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    pre_args: Sequence[str] = (),
) -> subprocess.CompletedProcess[bytes]:
    """``run_git`` for binary output (blobs, ``-z`` listings): stdout/stderr as bytes."""
    return subprocess.run(
        ["git", *pre_args, "-C", str(repo), *args],
        input=stdin,
        capture_output=True,
        env=None if env is None else dict(env),
    )


def popen_git(repo: Path, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``git -C repo args`` started, not waited for: for streams such as
    ``git cat-file --batch`` (``kwargs`` go to ``Popen``: stdin, stdout, stderr)."""
    return subprocess.Popen(["git", "-C", str(repo), *args], **kwargs)


def git(
    repo: Path,
    *args: str,
    check: bool = True,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    error: type[GitError] = GitError,
) -> str:
    """git's stdout (stripped when ``check``); ``error`` naming repo and command when
    git fails and ``check`` is set."""
    proc = run_git(repo, args, stdin=stdin, env=env)
    if check and proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
        raise error(f"{repo}: git {' '.join(args[:3])}: {detail}")
    return proc.stdout.strip() if check else proc.stdout


def git_ok(repo: Path, *args: str) -> bool:
    return run_git(repo, args).returncode == 0


def head_state(repo: Path) -> tuple[str | None, bool | None]:
    """The commit checked out in ``repo`` and whether its work tree is dirty
    (``(None, None)`` outside git)."""
    head = run_git(repo, ("rev-parse", "HEAD"))
    if head.returncode != 0:
        return None, None
    status = run_git(repo, ("status", "--porcelain"))
    return head.stdout.strip(), bool(status.stdout.strip())
