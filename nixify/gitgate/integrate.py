"""``nixify integrate``: the operator moves a proposal onto an operator branch.

Fast-forward only, and signed. When the target is an ancestor of the branch,
the target moves to the branch's tip plus one signed integration commit on top
(``chore(integrate): BRANCH into TARGET``: the branch's tree, the branch's tip
as its only parent, so history stays a straight line), made with ``git
commit-tree -S`` and the operator's SSH signing key. The operator's signature
on it covers the agents' commits it brings (by hash); they need no signature
of their own. The ref moves by ``git merge --ff-only`` when the target is
checked out here, by a compare-and-swap ``update-ref`` when it is checked out
nowhere. A diverged branch is refused, unless an explicit operator grant is
given: then a signed merge commit is made (``git merge-tree`` and
``commit-tree -S``, so no work tree is touched until the ref moves) whose body
records the grant's date, its exact wording (quoted, verbatim), its scope and
the operator.

Only the operator integrates: the actor must be proven by key (see
``gate.sh``: a signing key listed for the operator in the allowed-signers
file, usable here), and the new commit's signature is checked before any ref
moves. The branch must follow the naming policy, and its chain must be clean:
no ``fixup!``/``squash!``/``amend!`` commits (fold them in first: ``nixify
fixup``), conventional messages, no leaks. Conflicts refuse the merge and
change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nixify.errors import ConfigError
from nixify.gitgate.git import GitError, current_branch, git, git_ok
from nixify.gitgate.policy import actor_role, run_gate
from nixify.gitgate.verify import (
    commits_of,
    fixup_commits,
    is_operator_signer,
    leak_problems,
    operator_names,
    signatures,
    subject_problems,
)


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


def integration_message(branch: str, into: str, branch_sha: str, into_sha: str, count: int,
                        operator: str) -> str:
    return (
        f"chore(integrate): {branch} into {into}\n\n"
        f"Fast-forward integration of {branch} ({count} commit(s), tip {branch_sha[:12]}) "
        f"into {into} (was {into_sha[:12]}); this commit carries the operator's signature "
        "for the chain it brings.\n\n"
        f"Integrated-Branch: {branch}\n"
        f"Integrated-Tip: {branch_sha}\n"
        f"Integrated-Into: {into}\n"
        f"Integrated-By: {operator}\n"
    )


def _check_chain(repo: Path, branch: str, into: str, base: str, tip: str) -> int:
    """Refuse a chain that is not ready: fixup commits, bad messages, leaks."""
    chain = commits_of(repo, [tip, f"^{base}"])
    if not chain:
        raise ConfigError(f"{repo}: {branch} adds nothing to {into}; nothing to integrate")
    fixups = fixup_commits(chain)
    if fixups:
        named = ", ".join(f"{c.sha[:10]} {c.subject!r}" for c in fixups)
        raise ConfigError(
            f"{repo}: {branch} still holds fixup!/squash!/amend! commit(s): {named}; fold "
            f"them into the commits they fix first (on {branch}: nixify fixup COMMIT, or "
            f"git rebase -i --autosquash {into}); refused"
        )
    problems = subject_problems(repo, chain) + leak_problems(repo, chain, tip)
    if problems:
        raise ConfigError(
            f"{repo}: {branch} is not ready to integrate; refused:\n"
            + "\n".join(f"  {p.render()}" for p in problems)
        )
    return len(chain)


def _signed_commit(repo: Path, tree: str, parents: list[str], message: str,
                   actor: str) -> str:
    args = ["commit-tree", "-S", tree]
    for parent in parents:
        args += ["-p", parent]
    try:
        new = git(repo, *args, stdin=message)
    except GitError as exc:
        raise ConfigError(
            f"{repo}: could not sign the integration commit with the operator's key "
            f"(git config user.signingkey, gpg.format ssh): {exc}; nothing changed"
        ) from exc
    status, signer = signatures(repo, [new]).get(new, ("E", ""))
    if status != "G" or not is_operator_signer(signer, operator_names(repo)):
        raise ConfigError(
            f"{repo}: the integration commit's signature does not verify as {actor}'s "
            f"(git verify-commit {new[:12]}: status {status}, signer {signer or 'none'}); "
            "nothing changed"
        )
    return new


def integrate(
    repo: Path,
    branch: str,
    into: str,
    grant_wording: str | None = None,
    grant_date: str | None = None,
    grant_scope: str | None = None,
) -> Integration:
    role, actor, why = actor_role(repo)
    if role != "operator":
        detail = f": {why}" if why else (
            " (set NIXIFY_ACTOR or git config nixify.actor to a name in nixify.operators)")
        raise ConfigError(
            f"{repo}: integrate is operator-only, and actor {actor or '(unnamed)'} is not "
            f"proven an operator by key{detail}"
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
        count = _check_chain(repo, branch, into, into_sha, branch_sha)
        message = integration_message(branch, into, branch_sha, into_sha, count, actor)
        new = _signed_commit(repo, f"{branch_sha}^{{tree}}", [branch_sha], message, actor)
        _advance(repo, into, into_sha, new, here, f"integrate {branch}: fast-forward, signed")
        return Integration(branch, into, into_sha, new, True)
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
    base = git(repo, "merge-base", into_sha, branch_sha, check=False).strip()
    _check_chain(repo, branch, into, base or into_sha, branch_sha)
    proc_tree = git(repo, "merge-tree", "--write-tree", into_sha, branch_sha, check=False)
    tree = proc_tree.splitlines()[0].strip() if proc_tree else ""
    if not git_ok(repo, "merge-tree", "--write-tree", into_sha, branch_sha):
        conflicts = "; ".join(proc_tree.splitlines()[1:6])
        raise ConfigError(
            f"{repo}: merging {branch} into {into} conflicts ({conflicts}); nothing changed"
        )
    message = merge_message(branch, into, branch_sha, into_sha, grant, actor)
    new = _signed_commit(repo, tree, [into_sha, branch_sha], message, actor)
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
