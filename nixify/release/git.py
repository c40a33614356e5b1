"""Release refs in git: annotated tags that are never moved, and per-target
branches that only fast-forward. Every update is a compare-and-swap on the ref."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from nixify.git import GitError, run_git
from nixify.release.names import ReleaseTagName, parse_release_tag, release_branch

ZERO = "0" * 40


class ReleaseError(GitError):
    """A release ref could not be created or moved (and was left as it was)."""

    exit_code = 1


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = run_git(repo, args)
    if check and proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
        raise ReleaseError(f"{repo}: git {' '.join(args)}: {detail}")
    return proc


def resolve(repo: Path, ref: str) -> str | None:
    """The commit ``ref`` names (peeling tags), or None if it names none."""
    proc = _git(repo, "rev-parse", "-q", "--verify", f"{ref}^{{commit}}", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def short_rev(repo: Path, commit: str) -> str:
    return _git(repo, "rev-parse", "--short=7", commit).stdout.strip()


def is_ancestor(repo: Path, older: str, newer: str) -> bool:
    proc = _git(repo, "merge-base", "--is-ancestor", older, newer, check=False)
    if proc.returncode not in (0, 1):
        raise ReleaseError(f"{repo}: git merge-base {older} {newer}: {proc.stderr.strip()}")
    return proc.returncode == 0


def identity_args(repo: Path) -> list[str]:
    """Fall back to a nixify identity only when git has none configured."""
    if _git(repo, "var", "GIT_COMMITTER_IDENT", check=False).returncode == 0:
        return []
    return ["-c", "user.name=nixify", "-c", "user.email=nixify@localhost"]


def create_tag(repo: Path, name: str, commit: str, message: str) -> str:
    """Create the annotated tag ``name`` on ``commit``; returns the tag object's id.

    An existing tag is never moved, not even to the same commit: that is an error
    (``git tag`` without ``-f`` refuses the name, so a race cannot move one either).
    """
    make_tag(repo, name, commit, message, identity_args(repo))
    return _git(repo, "rev-parse", f"refs/tags/{name}").stdout.strip()


def make_tag(repo: Path, name: str, commit: str, message: str, identity: list[str]) -> None:
    """``create_tag`` in one git call, with the identity arguments given."""
    proc = run_git(
        repo,
        ("tag", "-a", "-F", "-", "--cleanup=verbatim", name, commit),
        stdin=message,
        pre_args=identity,
    )
    if proc.returncode != 0:
        if "already exists" in proc.stderr:
            at = resolve(repo, f"refs/tags/{name}") or "?"
            raise ReleaseError(
                f"{repo}: tag {name} already exists (at {at[:12]}); release tags are never moved"
            )
        raise ReleaseError(f"{repo}: git tag {name}: {proc.stderr.strip()}")


def release_refs(repo: Path) -> dict[str, str]:
    """Every ``refs/heads/release/*`` and ``refs/tags/release/*`` ref -> the object it
    holds, in one git call."""
    out = _git(repo, "for-each-ref", "--format=%(refname) %(objectname)",
               "refs/heads/release/", "refs/tags/release/").stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


@dataclass(frozen=True)
class BranchUpdate:
    """What happened to ``release/<target>``: created, advanced or already there."""

    branch: str
    old: str | None
    new: str
    action: str  # "created" | "advanced" | "unchanged"

    def describe(self) -> str:
        if self.action == "created":
            return f"{self.branch} created at {self.new[:12]}"
        if self.action == "unchanged":
            return f"{self.branch} already at {self.new[:12]}"
        assert self.old
        return f"{self.branch} fast-forwarded {self.old[:12]} -> {self.new[:12]}"


def check_fast_forward(repo: Path, target: str, commit: str,
                       tips: dict[str, str] | None = None) -> str | None:
    """The current tip of ``release/<target>`` (None if absent), after checking that
    moving it to ``commit`` is a fast-forward; raises ReleaseError if it is not.
    ``tips`` (from ``release_refs``) saves looking the refs up one by one."""
    branch = release_branch(target)
    if tips is None:
        new = resolve(repo, commit)
        if new is None:
            raise ReleaseError(f"{repo}: {commit!r} is not a commit; {branch} not moved")
        old = resolve(repo, f"refs/heads/{branch}")
    else:
        new, old = commit, tips.get(f"refs/heads/{branch}")
    if old is not None and old != new and not is_ancestor(repo, old, new):
        raise ReleaseError(
            f"{repo}: refused to move {branch} from {old[:12]} to {new[:12]}: not a "
            f"fast-forward ({new[:12]} does not contain {old[:12]}); release branches "
            "only fast-forward"
        )
    return old


def move_branch(repo: Path, target: str, new: str, old: str | None,
                reason: str = "") -> BranchUpdate:
    """Move ``release/<target>`` from ``old`` (checked by ``check_fast_forward``) to
    ``new``: a compare-and-swap, refused if the branch is no longer at ``old``."""
    branch = release_branch(target)
    if old == new:
        return BranchUpdate(branch, old, new, "unchanged")
    message = f"nixify release: {reason}" if reason else f"nixify release: {branch}"
    _git(repo, "update-ref", "-m", message, f"refs/heads/{branch}", new, old or ZERO)
    return BranchUpdate(branch, old, new, "created" if old is None else "advanced")


def advance_branch(repo: Path, target: str, commit: str, reason: str = "") -> BranchUpdate:
    """Fast-forward ``release/<target>`` to ``commit`` (creating it if absent).

    A non-fast-forward update is refused with ReleaseError and changes nothing; the
    update is a compare-and-swap, so a concurrent move of the branch is refused too.
    """
    old = check_fast_forward(repo, target, commit)
    new = resolve(repo, commit)
    assert new is not None
    return move_branch(repo, target, new, old, reason)


@dataclass(frozen=True)
class ReleaseTag:
    """A release tag as git holds it: its name, commit, tagger date and message."""

    name: str
    parts: ReleaseTagName
    commit: str
    tagged: str
    message: str
    annotated: bool


_SEP = "\x1f"
_END = "\x1e"


def list_tags(repo: Path, target: str | None = None) -> list[ReleaseTag]:
    """Every release tag (of ``target`` if given), oldest first by name's UTC stamp."""
    pattern = f"refs/tags/release/{target}/" if target else "refs/tags/release/"
    fmt = _SEP.join(
        ["%(refname)", "%(objecttype)", "%(*objectname)", "%(objectname)",
         "%(taggerdate:iso-strict)", "%(contents)"]
    ) + _END
    out = _git(repo, "for-each-ref", f"--format={fmt}", pattern).stdout
    tags = []
    for chunk in out.split(_END):
        chunk = chunk.lstrip("\n")
        if not chunk:
            continue
        ref, kind, peeled, obj, date, message = chunk.split(_SEP, 5)
        parts = parse_release_tag(ref)
        if parts is None:
            continue
        annotated = kind == "tag"
        tags.append(
            ReleaseTag(
                name=parts.name,
                parts=parts,
                commit=peeled if annotated else obj,
                tagged=date,
                message=message,
                annotated=annotated,
            )
        )
    return sorted(tags, key=lambda t: (t.parts.stamp, t.name))
