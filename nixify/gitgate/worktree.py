"""``nixify worktree new|done``: one isolated work tree per agent branch.

``new OWNER/TYPE/TOPIC`` checks the name against the gate, forks the branch
from the HEAD of the operator branch (``--from``, else ``git config
nixify.operatorBranch``, else ``main``) and adds a work tree for it beside the
main one (``<repo>.worktrees/<owner>-<type>-<topic>``; ``--path`` to choose).
The fork point is recorded in ``git config branch.<name>.nixifyBase``.

``done`` (run inside that work tree) refuses while there are uncommitted
changes (nothing is lost), writes a handoff note for the next agent into the
main work tree's ``handoff/<owner>-<type>-<topic>.md`` (what changed: commits
and files since the fork; what's open: ``--open`` items and the note text),
then removes the work tree. The branch stays for the operator to integrate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nixify.errors import ConfigError
from nixify.gitgate.git import config_get, current_branch, git, git_ok
from nixify.gitgate.policy import run_gate
from nixify.util import atomic_write


@dataclass(frozen=True)
class NewWorktree:
    branch: str
    path: Path
    base: str
    base_sha: str


def main_worktree(repo: Path) -> Path:
    common = Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir"))
    return common.parent


def _slug(branch: str) -> str:
    return branch.replace("/", "-")


def new_worktree(
    repo: Path, branch: str, base: str | None = None, path: Path | None = None
) -> NewWorktree:
    refusal = run_gate(repo, "check-branch", branch)
    if refusal.returncode != 0:
        raise ConfigError(f"{branch}: {refusal.stderr.strip()}")
    base = base or config_get(repo, "nixify.operatorBranch") or "main"
    if not git_ok(repo, "rev-parse", "--verify", "-q", f"refs/heads/{base}"):
        raise ConfigError(f"{repo}: operator branch {base!r} does not exist (use --from)")
    if git_ok(repo, "rev-parse", "--verify", "-q", f"refs/heads/{branch}"):
        raise ConfigError(f"{repo}: branch {branch!r} already exists")
    top = main_worktree(repo)
    where = path or top.parent / f"{top.name}.worktrees" / _slug(branch)
    if where.exists():
        raise ConfigError(f"{where}: already exists")
    base_sha = git(repo, "rev-parse", f"refs/heads/{base}")
    where.parent.mkdir(parents=True, exist_ok=True)
    git(repo, "worktree", "add", "-q", "-b", branch, str(where), base_sha)
    git(repo, "config", f"branch.{branch}.nixifyBase", f"{base} {base_sha}")
    return NewWorktree(branch, where, base, base_sha)


def handoff_note(
    wt: Path, branch: str, base: str, base_sha: str, note: str, open_items: list[str]
) -> str:
    commits = git(wt, "log", "--format=- %h %s", f"{base_sha}..HEAD")
    files = git(wt, "diff", "--stat", f"{base_sha}..HEAD")
    head = git(wt, "rev-parse", "--short", "HEAD")
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"# Handoff: {branch}",
        "",
        f"- branch: `{branch}` at `{head}`",
        f"- forked from: `{base}` at `{base_sha[:12]}`",
        f"- written: {when}",
        "",
        "## What changed",
        "",
        commits or "(no commits since the fork)",
        "",
    ]
    if files:
        lines += ["```", files, "```", ""]
    lines += ["## What's open", ""]
    lines += [f"- {item}" for item in open_items] or ["- (nothing listed)"]
    if note.strip():
        lines += ["", "## Notes", "", note.strip()]
    return "\n".join(lines) + "\n"


def finish_worktree(wt: Path, note: str = "", open_items: list[str] | None = None) -> Path:
    """Write the handoff note, remove the work tree; return the note's path."""
    top = main_worktree(wt)
    wt_top = Path(git(wt, "rev-parse", "--show-toplevel"))
    if wt_top.resolve() == top.resolve():
        raise ConfigError(f"{wt_top}: this is the main work tree; run `done` in an agent's one")
    branch = current_branch(wt)
    if branch is None:
        raise ConfigError(f"{wt_top}: HEAD is detached; check out the work tree's branch")
    dirty = git(wt, "status", "--porcelain")
    if dirty:
        raise ConfigError(
            f"{wt_top}: uncommitted changes; commit them (or remove them) first:\n{dirty}"
        )
    recorded = config_get(wt, f"branch.{branch}.nixifyBase")
    if recorded:
        base, _, base_sha = recorded.partition(" ")
    else:
        base = config_get(wt, "nixify.operatorBranch") or "main"
        base_sha = git(wt, "merge-base", "HEAD", f"refs/heads/{base}")
    text = handoff_note(wt, branch, base, base_sha, note, open_items or [])
    out = top / "handoff" / f"{_slug(branch)}.md"
    atomic_write(out, text)
    git(top, "worktree", "remove", str(wt_top))
    return out
