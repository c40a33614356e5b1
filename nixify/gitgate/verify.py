"""The backstop ``--no-verify`` cannot skip: ``nixify gate verify`` and ``pre-receive``.

Both re-run, on every commit a range or a push brings, what the client hooks
check at commit and push time, from the objects themselves:

- branch policy: the ref's name follows ``<owner>/<type>/<topic>`` (owners,
  types and protected globs from the repository's git config, as ``gate.sh``
  reads them), or it is protected;
- commit-message shape of every commit (``gate.sh check-subjects``);
- the leak scan of every blob a commit adds or changes (``nixify.leak``'s
  ``scan_bytes``, the ``.leak-allowlist`` of the range's tip);
- on a protected branch: it only moves forward (the old tip is an ancestor of
  the new one), never holds ``fixup!``/``squash!``/``amend!`` commits, and the
  new tip and every new merge commit carry a good SSH signature by an operator
  (``git log --format=%G?/%GS`` against ``gpg.ssh.allowedSignersFile``; the
  principal is a name in ``nixify.operators``, or ``name@...``). The agents'
  commits a signed integration commit brings need no signature of their own:
  the operator's signature covers them through the commit hashes. Deleting a
  protected branch is refused.

``verify`` checks a range (default: what the current branch adds to its
upstream) and exits 1 naming each offending commit. ``pre_receive`` reads git's
``old new ref`` lines and refuses the whole push if any update fails.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nixify.errors import ConfigError
from nixify.git import run_git, run_git_bytes
from nixify.gitgate.git import GitError, config_get, git, git_ok
from nixify.gitgate.policy import run_gate
from nixify.leak.allowlist import load_allowlist
from nixify.leak.scanner import Finding, scan_bytes

ZERO = "0" * 40
FIXUP_PREFIXES: tuple[str, ...] = ("fixup! ", "squash! ", "amend! ")
ALLOWLIST_NAME = ".leak-allowlist"


@dataclass(frozen=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    subject: str


@dataclass(frozen=True)
class Problem:
    """One failed check: of a commit (``sha`` set) or of the ref update itself."""

    reason: str
    sha: str = ""
    subject: str = ""

    def render(self) -> str:
        if not self.sha:
            return self.reason
        return f"{self.sha[:10]} {self.subject!r}: {self.reason}"


@dataclass
class Verdict:
    ref: str
    commits: list[Commit]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def commits_of(repo: Path, revs: Iterable[str]) -> list[Commit]:
    """The commits ``revs`` (rev-list syntax) select, oldest first."""
    out = git(repo, "log", "--topo-order", "--reverse", "--format=%H%x00%P%x00%s", *revs, "--")
    commits = []
    for line in out.splitlines():
        sha, _, rest = line.partition("\0")
        parents, _, subject = rest.partition("\0")
        if sha:
            commits.append(Commit(sha, tuple(parents.split()), subject))
    return commits


def is_fixup(subject: str) -> bool:
    return subject.startswith(FIXUP_PREFIXES)


def fixup_commits(commits: Iterable[Commit]) -> list[Commit]:
    return [c for c in commits if is_fixup(c.subject)]


# --- the policy script's answers -------------------------------------------


def name_check(repo: Path, branch: str) -> tuple[str, str]:
    """("protected" | "branch" | "refused", explanation when refused)."""
    proc = run_gate(repo, "check-name", branch)
    if proc.returncode == 0:
        return proc.stdout.strip(), ""
    lines = [ln.removeprefix("nixify-gate: ").strip() for ln in proc.stderr.splitlines()]
    return "refused", "; ".join(ln.removeprefix("refused: ") for ln in lines if ln)


def protected_names(repo: Path, names: Iterable[str]) -> set[str]:
    names = list(names)
    if not names:
        return set()
    return set(run_gate(repo, "is-protected", *names).stdout.split())


def operator_names(repo: Path) -> list[str]:
    return run_gate(repo, "operators").stdout.split()


def subject_problems(repo: Path, commits: list[Commit]) -> list[Problem]:
    if not commits:
        return []
    stdin = "".join(f"{c.sha} {c.subject}\n" for c in commits)
    bad = set(run_gate(repo, "check-subjects", stdin=stdin).stdout.split())
    return [
        Problem("message is not `type(scope): summary` with a configured type "
                "(git config nixify.types)", c.sha, c.subject)
        for c in commits if c.sha in bad
    ]


# --- leak scan --------------------------------------------------------------


def introduced_blobs(repo: Path, commits: list[Commit]) -> list[tuple[Commit, str, str]]:
    """(commit, blob, path) for each blob a commit adds or changes, first commit only.

    Merges are compared with their first parent, so a conflict resolution is
    scanned too; a blob already seen in an earlier commit is not read again.
    """
    if not commits:
        return []
    by_sha = {c.sha: c for c in commits}
    proc = run_git_bytes(
        repo,
        ("diff-tree", "--stdin", "-r", "-z", "--raw", "--no-renames", "--root", "--no-abbrev",
         "-m", "--first-parent"),
        stdin="".join(c.sha + "\n" for c in commits).encode(),
    )
    if proc.returncode != 0:
        raise GitError(f"{repo}: git diff-tree: {proc.stderr.decode(errors='replace').strip()}")
    tokens = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    seen: set[str] = set()
    out: list[tuple[Commit, str, str]] = []
    current: Commit | None = None
    i = 0
    while i < len(tokens):
        tok = tokens[i].strip()
        i += 1
        if not tok:
            continue
        if tok.startswith(":"):
            path = tokens[i] if i < len(tokens) else ""
            i += 1
            fields = tok[1:].split()
            if len(fields) < 5 or current is None:
                continue
            new_mode, new_blob, status = fields[1], fields[3], fields[4]
            if status.startswith("D") or new_blob == ZERO or new_mode in ("160000", "120000"):
                continue
            if new_blob not in seen:
                seen.add(new_blob)
                out.append((current, new_blob, path))
            continue
        current = by_sha.get(tok.split()[0], current)
    return out


def read_blobs(repo: Path, shas: list[str]) -> dict[str, bytes]:
    if not shas:
        return {}
    proc = run_git_bytes(
        repo, ("cat-file", "--batch"), stdin="".join(s + "\n" for s in shas).encode()
    )
    if proc.returncode != 0:
        raise GitError(f"{repo}: git cat-file: {proc.stderr.decode(errors='replace').strip()}")
    out, contents, pos = proc.stdout, {}, 0
    while pos < len(out):
        nl = out.index(b"\n", pos)
        header = out[pos:nl].split()
        if len(header) < 3:  # "<sha> missing"
            pos = nl + 1
            continue
        sha, size = header[0].decode(), int(header[2])
        contents[sha] = out[nl + 1 : nl + 1 + size]
        pos = nl + 1 + size + 1
    return contents


def allowlist_at(repo: Path, rev: str | None) -> object | None:
    """The ``.leak-allowlist`` as committed at ``rev`` (None: there is none)."""
    if rev is None:
        return None
    proc = run_git_bytes(repo, ("cat-file", "blob", f"{rev}:{ALLOWLIST_NAME}"))
    if proc.returncode != 0:
        return None
    return _load_allowlist_bytes(proc.stdout, repo)


def _load_allowlist_bytes(data: bytes, repo: Path) -> object:
    with tempfile.TemporaryDirectory(prefix="nixify-allow-") as tmp:
        path = Path(tmp) / ALLOWLIST_NAME
        path.write_bytes(data)
        return load_allowlist(path, repo)


def _allowed(allowlist: object | None, finding: Finding) -> bool:
    """Whether the allowlist names ``finding``; its path is relative to the repository's
    root (a finding with a commit is matched by that path, not the file system's)."""
    if allowlist is None:
        return False
    allows = getattr(allowlist, "allows", None)
    as_committed = dataclasses.replace(finding, commit=finding.commit or "index")
    return bool(allows(as_committed)) if callable(allows) else False


def scan_blobs(repo: Path, items: list[tuple[str, str]], allowlist: object | None,
               ) -> dict[str, list[Finding]]:
    """blob -> its findings (allowlist applied), for (blob, path) pairs."""
    contents = read_blobs(repo, sorted({b for b, _ in items}))
    found: dict[str, list[Finding]] = {}
    for blob, path in items:
        data = contents.get(blob)
        if data is None:
            continue
        hits = [f for f in scan_bytes(data, path) if not _allowed(allowlist, f)]
        if hits:
            found[blob] = hits
    return found


def leak_problems(repo: Path, commits: list[Commit], tip: str | None) -> list[Problem]:
    blobs = introduced_blobs(repo, commits)
    if not blobs:
        return []
    found = scan_blobs(repo, [(b, p) for _, b, p in blobs], allowlist_at(repo, tip))
    problems: list[Problem] = []
    for commit, blob, _path in blobs:
        for f in found.get(blob, []):
            f = dataclasses.replace(f, commit=commit.sha[:10])
            problems.append(Problem(
                f"leak: {f.path}:{f.line}:{f.column}: {f.kind}: {f.redacted} [{f.fingerprint}]",
                commit.sha, commit.subject,
            ))
    return problems


# --- signatures -------------------------------------------------------------


def signatures(repo: Path, shas: list[str]) -> dict[str, tuple[str, str]]:
    """sha -> (%G?, %GS) as git reports them (ssh-keygen -Y verify underneath)."""
    if not shas:
        return {}
    out = git(repo, "show", "-s", "--no-walk=unsorted", "--format=%H%x00%G?%x00%GS", *shas)
    result = {}
    for line in out.splitlines():
        parts = line.split("\0")
        if len(parts) == 3:
            result[parts[0]] = (parts[1], parts[2])
    return result


SIG_MEANING = {
    "N": "unsigned",
    "U": "signed by a key the allowed-signers file does not list",
    "B": "bad signature",
    "E": "signature cannot be checked",
    "X": "signature has expired",
    "Y": "signed by an expired key",
    "R": "signed by a revoked key",
}


def allowed_signers(repo: Path) -> str | None:
    return config_get(repo, "gpg.ssh.allowedSignersFile")


def is_operator_signer(signer: str, operators: list[str]) -> bool:
    return bool(signer) and (signer in operators or signer.split("@", 1)[0] in operators)


def signature_problems(repo: Path, need: list[Commit]) -> list[Problem]:
    if not need:
        return []
    operators = operator_names(repo)
    if not allowed_signers(repo) or not operators:
        missing = "git config gpg.ssh.allowedSignersFile FILE" if not allowed_signers(repo) \
            else "git config nixify.operators NAME"
        return [Problem(
            f"no operator can be recognised here ({missing}); a protected branch only "
            "moves to commits signed by an operator", c.sha, c.subject) for c in need]
    sigs = signatures(repo, [c.sha for c in need])
    problems = []
    for c in need:
        status, signer = sigs.get(c.sha, ("E", ""))
        if status == "G" and is_operator_signer(signer, operators):
            continue
        if status == "G":
            why = f"signed by {signer}, who is not an operator (nixify.operators)"
        else:
            why = SIG_MEANING.get(status, f"signature status {status}")
        problems.append(Problem(
            f"not signed by an operator ({why}); a protected branch only moves to "
            "operator-signed commits (nixify integrate signs them)", c.sha, c.subject))
    return problems


# --- one ref update ---------------------------------------------------------


def check_branch_update(
    repo: Path, branch: str, old: str, new: str, revs: list[str]
) -> Verdict:
    """Every check for moving ``branch`` from ``old`` to ``new``; ``revs`` selects the
    commits to check (messages and blobs)."""
    ref = f"refs/heads/{branch}"
    problems: list[Problem] = []
    kind, why = name_check(repo, branch)
    if new == ZERO:
        if kind == "protected":
            problems.append(Problem(f"{branch}: deleting a protected branch is refused"))
        return Verdict(ref, [], problems)
    if kind == "refused":
        problems.append(Problem(f"{branch}: {why}"))
    commits = commits_of(repo, revs)
    problems += subject_problems(repo, commits)
    problems += leak_problems(repo, commits, new)
    if kind == "protected":
        problems += protected_problems(repo, branch, old, new, revs)
    return Verdict(ref, commits, problems)


def protected_problems(repo: Path, branch: str, old: str, new: str,
                       revs: list[str]) -> list[Problem]:
    """A protected branch moves forward only, to operator-signed commits, no fixups.

    ``old`` unknown here (zero, or an object this repository lacks): the new
    commits are ``revs``."""
    problems: list[Problem] = []
    known = old != ZERO and git_ok(repo, "cat-file", "-e", f"{old}^{{commit}}")
    if known and not git_ok(repo, "merge-base", "--is-ancestor", old, new):
        problems.append(Problem(
            f"{branch}: {new[:10]} is not a fast-forward of {old[:10]}; a protected "
            "branch only moves forward"))
    range_commits = commits_of(repo, [new, f"^{old}"] if known else revs)
    for c in fixup_commits(range_commits):
        problems.append(Problem(
            "a fixup!/squash!/amend! commit on a protected branch (fold it in first: "
            "nixify fixup, or git rebase -i --autosquash)", c.sha, c.subject))
    by_sha = {c.sha: c for c in range_commits}
    tip = by_sha.get(new) or Commit(new, (), git(repo, "log", "-1", "--format=%s", new))
    need = [c for c in range_commits if len(c.parents) > 1 and c.sha != new] + [tip]
    return problems + signature_problems(repo, need)


def render(verdict: Verdict) -> list[str]:
    return [p.render() for p in verdict.problems]


# --- nixify gate verify -----------------------------------------------------


def upstream_range(repo: Path) -> tuple[str, str]:
    """(old, new) for what the current branch adds to its upstream."""
    branch = git(repo, "symbolic-ref", "--short", "-q", "HEAD", check=False).strip()
    if not branch:
        raise ConfigError(
            f"{repo}: HEAD is detached, so there is no upstream to compare with; name the "
            "range and the branch: nixify gate verify OLD..NEW --branch NAME")
    proc = run_git(repo, ("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}"))
    if proc.returncode != 0:
        raise ConfigError(
            f"{repo}: branch {branch!r} has no upstream, so the default range (what it adds "
            "to its upstream) is undefined; name one, e.g. nixify gate verify main..HEAD, or "
            f"set an upstream: git branch --set-upstream-to=origin/{branch}")
    return proc.stdout.strip(), "HEAD"


def _branch_of(repo: Path, new: str) -> str | None:
    if new == "HEAD":
        name = git(repo, "symbolic-ref", "--short", "-q", "HEAD", check=False).strip()
        return name or None
    if git_ok(repo, "rev-parse", "--verify", "-q", f"refs/heads/{new}"):
        return new
    for line in git(repo, "for-each-ref", "--format=%(refname:short)",
                    f"refs/remotes/*/{new.split('/', 1)[-1]}").splitlines():
        if line == new:
            return new.split("/", 1)[1]
    return None


def verify(repo: Path, rng: str | None, branch: str | None = None) -> int:
    """``nixify gate verify``: 0 clean, 1 offending commits (each named on stdout)."""
    if rng is None:
        old_rev, new_rev = upstream_range(repo)
    else:
        if ".." not in rng or "..." in rng:
            raise ConfigError(f"{rng!r}: give a range OLD..NEW (e.g. origin/main..HEAD)")
        old_rev, _, new_rev = rng.partition("..")
        old_rev, new_rev = old_rev or "HEAD", new_rev or "HEAD"
    label = f"{old_rev}..{new_rev}"
    try:
        old = git(repo, "rev-parse", "--verify", f"{old_rev}^{{commit}}")
        new = git(repo, "rev-parse", "--verify", f"{new_rev}^{{commit}}")
    except GitError as exc:
        raise ConfigError(f"{label}: not a range of this repository ({exc})") from exc
    name = branch or _branch_of(repo, new_rev)
    if name is None:
        raise ConfigError(
            f"{label}: cannot tell which branch {new_rev} is; the branch policy needs it "
            "(--branch NAME, e.g. the branch CI builds)")
    verdict = check_branch_update(repo, name, old, new, [new, f"^{old}"])
    head = f"nixify gate verify: {name}: {len(verdict.commits)} commit(s) in {label}"
    if verdict.ok:
        print(f"{head}: clean")
        return 0
    print(f"{head}:")
    for line in render(verdict):
        print(f"  refused: {line}")
    bad = len({p.sha for p in verdict.problems if p.sha})
    print(f"nixify gate verify: {bad} of {len(verdict.commits)} commit(s) refused"
          + ("" if bad == len(verdict.problems) else "; and the branch itself (above)"
             if any(not p.sha for p in verdict.problems) else ""))
    return 1


# --- the server's pre-receive hook ------------------------------------------


def say(msg: str) -> None:
    print(f"nixify pre-receive: {msg}", file=sys.stderr, flush=True)


def pre_receive(repo: Path, text: str) -> int:
    """Check each ``old new ref`` update; 0 accepts the push, 1 refuses all of it."""
    failed = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        old, new, ref = parts
        if ref.startswith("refs/heads/"):
            branch = ref.removeprefix("refs/heads/")
            revs = [new, "--not", "--all"] + ([old] if old != ZERO else [])
            verdict = check_branch_update(repo, branch, old, new, revs)
        elif ref.startswith("refs/tags/"):
            commits = [] if new == ZERO else commits_of(repo, [new, "--not", "--all"])
            problems = subject_problems(repo, commits)
            problems += leak_problems(repo, commits, None if new == ZERO else new)
            verdict = Verdict(ref, commits, problems)
        else:
            verdict = Verdict(ref, [], [Problem(
                f"{ref}: only branches (refs/heads) and tags (refs/tags) are accepted")])
        if verdict.ok:
            say(f"{ref}: {len(verdict.commits)} new commit(s) checked: clean")
            continue
        failed += 1
        say(f"refused {ref} ({old[:10]} -> {new[:10]}):")
        for msg in render(verdict):
            say(f"  {msg}")
    if failed:
        say(f"push refused: {failed} ref update(s) failed the gate (nothing was updated)")
        return 1
    return 0


# --- commit time: the leak scan of what is staged -----------------------------


def staged(repo: Path) -> int:
    """The leak scan of the staged blobs (``nixify gate staged``): 0 clean, 1 refused."""
    proc = run_git_bytes(
        repo,
        ("diff", "--cached", "--raw", "-z", "--no-abbrev", "--no-renames", "--diff-filter=d"),
    )
    if proc.returncode != 0:
        raise GitError(f"{repo}: git diff --cached: {proc.stderr.decode(errors='replace')}")
    tokens = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    items: list[tuple[str, str]] = []
    seen: set[str] = set()
    for meta, path in zip(tokens[::2], tokens[1::2], strict=False):
        fields = meta.lstrip(":").split()
        if len(fields) < 5 or fields[3] in seen or fields[3] == ZERO:
            continue
        if fields[1] not in ("160000", "120000"):
            seen.add(fields[3])
            items.append((fields[3], path))
    allow = run_git_bytes(repo, ("cat-file", "blob", f":{ALLOWLIST_NAME}"))
    allowlist = _load_allowlist_bytes(allow.stdout, repo) if allow.returncode == 0 else None
    found = scan_blobs(repo, items, allowlist)
    findings = [f for blob, _ in items for f in found.get(blob, [])]
    if not findings:
        return 0
    for f in findings:
        print(f.render(), file=sys.stderr)
    print(f"nixify-gate: refused: the commit would record {len(findings)} leak finding(s) "
          "(above); remove them, or allowlist a documented example in "
          f"{ALLOWLIST_NAME} with a reason", file=sys.stderr)
    return 1
