"""``nixify integrate``: the operator moves a proposal onto an operator branch.

Fast-forward only. When the target is an ancestor of the branch, the target
ref moves to the branch's tip (``git merge --ff-only`` when the target is
checked out here, a compare-and-swap ``update-ref`` when it is checked out
nowhere). Otherwise the integration is refused, unless an explicit operator
grant is given: then a merge commit is made (``git merge-tree`` and
``commit-tree``, so no work tree is touched until the ref moves) whose body
records the grant's date, its exact wording (quoted, verbatim), its scope and
the operator. Only the operator integrates; the branch must follow the naming
policy; conflicts refuse the merge and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nixify.errors import ConfigError
from nixify.gitgate.git import GitError, current_branch, git, git_ok
from nixify.gitgate.policy import actor_role, run_gate


@dataclass(frozen=True)
class Grant:
    wording: str
    date: str
    scope: str


@dataclass(frozen=True)
class Integration:
    branch: str
    into: str
    old: str
    new: str
    fast_forward: bool


def _worktree_of(repo: Path, branch: str) -> Path | None:
    """The work tree that has ``branch`` checked out, if any."""
    out = git(repo, "worktree", "list", "--porcelain")
    path: str | None = None
    for line in out.splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree ") :]
        elif line == f"branch refs/heads/{branch}" and path is not None:
            return Path(path)
    return None


def merge_message(branch: str, into: str, branch_sha: str, into_sha: str, grant: Grant,
                  operator: str) -> str:
    quoted = "\n".join("> " + line for line in grant.wording.splitlines()) or "> "
    return (
        f"chore(integrate): merge {branch} into {into} by operator grant\n\n"
        f"Non-fast-forward integration of {branch} ({branch_sha[:12]}) into {into} "
        f"({into_sha[:12]}), allowed only by this explicit operator grant.\n\n"
        f"Operator-Grant-Date: {grant.date}\n"
        f"Operator-Grant-Scope: {grant.scope}\n"
        f"Operator-Grant-By: {operator}\n"
        f"Operator-Grant-Wording:\n{quoted}\n"
    )


def integrate(
    repo: Path,
    branch: str,
    into: str,
    grant_wording: str | None = None,
    grant_date: str | None = None,
    grant_scope: str | None = None,
) -> Integration:
    role, actor = actor_role(repo)
    if role != "operator":
        raise ConfigError(
            f"{repo}: integrate is operator-only; actor {actor or '(unnamed)'} is not in "
            "git config nixify.operators (set NIXIFY_ACTOR or git config nixify.actor)"
        )
    refusal = run_gate(repo, "check-branch", branch)
    if not git_ok(repo, "rev-parse", "--verify", "-q", f"refs/heads/{branch}"):
        raise ConfigError(f"{repo}: branch {branch!r} does not exist")
    if not git_ok(repo, "rev-parse", "--verify", "-q", f"refs/heads/{into}"):
        raise ConfigError(f"{repo}: target branch {into!r} does not exist")
    if refusal.returncode != 0:
        raise ConfigError(f"{repo}: branch {branch!r}: {refusal.stderr.strip()}")
    branch_sha = git(repo, "rev-parse", f"refs/heads/{branch}")
    into_sha = git(repo, "rev-parse", f"refs/heads/{into}")
    here = current_branch(repo) == into
    elsewhere = _worktree_of(repo, into)
    if elsewhere is not None and not here:
        raise ConfigError(
            f"{elsewhere}: {into!r} is checked out in that work tree; integrate there"
        )
    if here and git(repo, "status", "--porcelain", "--untracked-files=no"):
        raise ConfigError(f"{repo}: work tree has uncommitted changes; commit or clean first")
    if git_ok(repo, "merge-base", "--is-ancestor", into_sha, branch_sha):
        _advance(repo, into, into_sha, branch_sha, here, f"integrate {branch}: fast-forward")
        return Integration(branch, into, into_sha, branch_sha, True)
    if grant_wording is None or not grant_wording.strip():
        raise ConfigError(
            f"{repo}: {branch} has diverged from {into} (not a fast-forward); refused. "
            f"Rebase {branch} onto {into}, or give an explicit operator grant: "
            '--grant "<exact wording>"'
        )
    grant = Grant(
        wording=grant_wording,
        date=grant_date or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        scope=grant_scope or f"non-fast-forward merge of {branch} into {into}, this merge only",
    )
    proc_tree = git(repo, "merge-tree", "--write-tree", into_sha, branch_sha, check=False)
    tree = proc_tree.splitlines()[0].strip() if proc_tree else ""
    if not git_ok(repo, "merge-tree", "--write-tree", into_sha, branch_sha):
        conflicts = "; ".join(proc_tree.splitlines()[1:6])
        raise ConfigError(
            f"{repo}: merging {branch} into {into} conflicts ({conflicts}); nothing changed"
        )
    message = merge_message(branch, into, branch_sha, into_sha, grant, actor)
    new = git(repo, "commit-tree", tree, "-p", into_sha, "-p", branch_sha, stdin=message)
    _advance(repo, into, into_sha, new, here, f"integrate {branch}: merge by operator grant")
    return Integration(branch, into, into_sha, new, False)


def _advance(repo: Path, into: str, old: str, new: str, here: bool, reason: str) -> None:
    if here:
        git(repo, "merge", "--ff-only", "--quiet", new)
        return
    try:
        git(repo, "update-ref", "-m", reason, f"refs/heads/{into}", new, old)
    except GitError as exc:
        raise ConfigError(f"{repo}: {into} moved while integrating; nothing changed ({exc})") \
            from exc
