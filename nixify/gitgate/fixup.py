"""``nixify fixup COMMIT``: amend at source, on an agent's own branch.

A wrong commit is fixed where it was introduced, not by a forward fix on top.
``fixup`` records the staged change as ``fixup! <subject of COMMIT>`` (``git
commit --fixup``, through the hooks like any commit) and folds it into COMMIT
at once (``git rebase -i --autosquash`` with no editor, ``--autostash`` for
unstaged edits), so the branch reads as a sequence of correct commits again.

Refused, with nothing changed: on a protected branch or another agent's
branch (the gate's policy), on a detached HEAD, with nothing staged, for a
COMMIT that is not on the current branch, and for a COMMIT already published
where history is not rewritten: on the branch's upstream, on any protected
branch (local or remote-tracking), or at/below the branch's recorded fork point.
If folding conflicts with later commits, the rebase is aborted and the fix
stays recorded as the ``fixup!`` commit (to fold by hand).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nixify.errors import ConfigError
from nixify.git import run_git
from nixify.gitgate.git import GitError, config_get, current_branch, git, git_ok, toplevel
from nixify.gitgate.policy import run_gate
from nixify.gitgate.verify import name_check, protected_names


@dataclass(frozen=True)
class Fixup:
    branch: str
    target: str
    subject: str
    old_head: str
    new_head: str


def _published_on(repo: Path, sha: str, branch: str) -> str | None:
    """The first ref where ``sha`` is already published (not to be rewritten), or None."""
    upstream = run_git(repo, ("rev-parse", "--symbolic-full-name", "@{upstream}"))
    upstream_ref = upstream.stdout.strip() if upstream.returncode == 0 else ""
    containing = git(repo, "for-each-ref", "--contains", sha, "--format=%(refname)",
                     "refs/heads", "refs/remotes").splitlines()
    if upstream_ref and upstream_ref in containing:
        return upstream_ref
    names: dict[str, str] = {}
    for ref in containing:
        if ref.startswith("refs/heads/"):
            names[ref] = ref.removeprefix("refs/heads/")
        elif ref.startswith("refs/remotes/") and not ref.endswith("/HEAD"):
            names[ref] = ref.removeprefix("refs/remotes/").split("/", 1)[-1]
    protected = protected_names(repo, set(names.values()))
    for ref, name in names.items():
        if name in protected:
            return ref
    recorded = config_get(repo, f"branch.{branch}.nixifyBase")
    if recorded:
        base_sha = recorded.partition(" ")[2]
        if base_sha and git_ok(repo, "merge-base", "--is-ancestor", sha, base_sha):
            return f"the fork point of {branch} ({recorded})"
    return None


def fixup(repo: Path, target: str) -> Fixup:
    repo = toplevel(repo)
    branch = current_branch(repo)
    if branch is None:
        raise ConfigError(f"{repo}: HEAD is detached; check out your branch first")
    kind, _ = name_check(repo, branch)
    if kind == "protected":
        raise ConfigError(
            f"{repo}: '{branch}' is a protected branch; its history is never rewritten "
            "(fixup folds commits on an agent's own branch only)"
        )
    refusal = run_gate(repo, "check-branch", branch)
    if refusal.returncode != 0:
        raise ConfigError(f"{repo}: {refusal.stderr.strip()}")
    try:
        sha = git(repo, "rev-parse", "--verify", f"{target}^{{commit}}")
    except GitError as exc:
        raise ConfigError(f"{repo}: {target!r} is not a commit") from exc
    if not git_ok(repo, "merge-base", "--is-ancestor", sha, "HEAD"):
        raise ConfigError(f"{repo}: {target} ({sha[:10]}) is not on {branch}")
    where = _published_on(repo, sha, branch)
    if where is not None:
        raise ConfigError(
            f"{repo}: {target} ({sha[:10]}) is already on {where}; history there is not "
            "rewritten, so fix it with a new commit instead"
        )
    if git_ok(repo, "diff", "--cached", "--quiet"):
        raise ConfigError(f"{repo}: nothing staged; stage the fix first (git add ...)")
    subject = git(repo, "log", "-1", "--format=%s", sha)
    old_head = git(repo, "rev-parse", "HEAD")
    proc = run_git(repo, ("commit", "-q", f"--fixup={sha}"))
    if proc.returncode != 0:
        raise ConfigError(f"{repo}: recording the fix failed:\n{proc.stderr.strip()}")
    fix_sha = git(repo, "rev-parse", "--short", "HEAD")
    parents = git(repo, "rev-list", "--parents", "-n1", sha).split()[1:]
    onto = [parents[0]] if parents else ["--root"]
    env = dict(os.environ, GIT_SEQUENCE_EDITOR="true", GIT_EDITOR="true")
    rebase = run_git(repo, ("rebase", "-q", "-i", "--autosquash", "--autostash", *onto), env=env)
    if rebase.returncode != 0:
        run_git(repo, ("rebase", "--abort"))
        raise ConfigError(
            f"{repo}: the fix is recorded as {fix_sha} 'fixup! {subject}', but folding it "
            f"into {sha[:10]} conflicts with later commits; rebase was aborted. Fold it by "
            f"hand: git rebase -i --autosquash {sha[:10]}~1\n{rebase.stderr.strip()}"
        )
    return Fixup(branch, sha, subject, old_head, git(repo, "rev-parse", "HEAD"))
