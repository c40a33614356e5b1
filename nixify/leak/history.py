"""History mode: every blob reachable from any ref or reflog entry of a repo.

A key committed and later deleted is still published by the history; this
mode reads each distinct blob once (one streaming ``git cat-file --batch``),
scans every byte of it (binary or not, any size: see ``scan_stream``), and
names the commit that introduced each leaking blob.

``scan_staged`` applies the same scan to what a commit would record: the
blobs in the index that are not already in ``HEAD``.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from nixify.errors import ConfigError
from nixify.git import git_ok, popen_git, run_git_bytes
from nixify.leak.scanner import Finding, scan_stream


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    proc = run_git_bytes(repo, args, stdin=stdin)
    if proc.returncode != 0:
        raise ConfigError(f"{repo}: git {args[0]} failed: {proc.stderr.decode().strip()}")
    return proc.stdout


ALL_HISTORY: tuple[str, ...] = ("--all", "--reflog")
GITLINK = "160000"


def history_blobs(repo: Path, revs: tuple[str, ...] = ALL_HISTORY) -> dict[str, str]:
    """Blob id -> the first path it was seen at, over ``revs`` (all refs and reflogs)."""
    out = _git(repo, "rev-list", "--objects", *revs, "--filter=object:type=blob")
    blobs: dict[str, str] = {}
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        sha, sep, path = line.partition(" ")
        if sep and sha not in blobs:
            blobs[sha] = path
    return blobs


class _Bounded:
    """The next ``size`` bytes of a stream, as a readable file for ``scan_stream``."""

    def __init__(self, fh: IO[bytes], size: int) -> None:
        self.fh, self.left = fh, size

    def read(self, n: int = -1) -> bytes:
        want = self.left if n < 0 else min(n, self.left)
        out = self.fh.read(want)
        if len(out) != want:
            raise ConfigError("git cat-file --batch: the output ended inside a blob")
        self.left -= want
        return out


def _scan_blobs(repo: Path, blobs: dict[str, str]) -> Iterator[tuple[str, list[Finding]]]:
    """(blob id, findings) for each of ``blobs`` (id -> path), read in one stream."""
    if not blobs:
        return
    with tempfile.TemporaryFile() as ids:
        ids.write("".join(s + "\n" for s in blobs).encode())
        ids.seek(0)
        proc = popen_git(
            repo,
            ("cat-file", "--batch"),
            stdin=ids,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            for _ in range(len(blobs)):
                header = proc.stdout.readline().split()
                if len(header) != 3:
                    what = b" ".join(header).decode("utf-8", "replace") or "no output"
                    raise ConfigError(f"{repo}: git cat-file cannot read a blob: {what}")
                sha, size = header[0].decode(), int(header[2])
                body = _Bounded(proc.stdout, size)
                found = scan_stream(body, blobs[sha])
                body.read()  # what a scan did not consume, if anything
                proc.stdout.read(1)  # the newline after each object
                yield sha, found
            stderr = proc.stderr.read()
            if proc.wait() != 0:
                raise ConfigError(f"{repo}: git cat-file failed: {stderr.decode().strip()}")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()


def introducing_commit(repo: Path, blob: str) -> str:
    """The oldest commit (short id) whose diff adds or removes ``blob``."""
    out = _git(repo, "log", "--all", "--reflog", "--format=%h", f"--find-object={blob}")
    commits = out.decode().split()
    return commits[-1] if commits else blob[:7]


def scan_history(repo: Path, revs: tuple[str, ...] = ALL_HISTORY) -> list[Finding]:
    """Findings in every blob reachable from ``revs`` (rev-list syntax, e.g. ``new ^old``)."""
    blobs = history_blobs(repo, revs)
    findings: list[Finding] = []
    for sha, found in _scan_blobs(repo, dict(sorted(blobs.items()))):
        if not found:
            continue
        commit = introducing_commit(repo, sha)
        findings.extend(
            Finding(f.path, f.line, f.column, f.kind, f.redacted, f.fingerprint, commit)
            for f in found
        )
    findings.sort(key=lambda f: (f.path, f.commit, f.line, f.column))
    return findings


def staged_blobs(repo: Path) -> dict[str, str]:
    """Blob id -> path for each index entry whose blob ``HEAD`` does not have at that path.

    With no ``HEAD`` yet (the first commit) that is every entry. Submodule
    entries (gitlinks) are commits in another repository, not blobs.
    """
    index = _git(repo, "ls-files", "-s", "-z")
    head: dict[str, str] = {}
    has_head = git_ok(repo, "rev-parse", "--verify", "-q", "HEAD^{tree}")
    if has_head:
        tree = _git(repo, "ls-tree", "-r", "-z", "--full-tree", "HEAD")
        for entry in tree.split(b"\0"):
            tmeta, _, tpath = entry.partition(b"\t")
            if tpath:
                head[tpath.decode("utf-8", "surrogateescape")] = tmeta.split()[2].decode()
    out: dict[str, str] = {}
    for entry in index.split(b"\0"):
        meta, _, raw_path = entry.partition(b"\t")
        if not raw_path:
            continue
        mode, sha, _stage = meta.decode().split()
        path = raw_path.decode("utf-8", "surrogateescape")
        if mode == GITLINK or head.get(path) == sha or sha in out:
            continue
        out[sha] = path
    return out


def scan_staged(repo: Path) -> list[Finding]:
    """Findings in the blobs a commit of the index would add (paths as in the index)."""
    findings: list[Finding] = []
    blobs = staged_blobs(repo)
    for _sha, found in _scan_blobs(repo, dict(sorted(blobs.items()))):
        findings.extend(found)
    findings.sort(key=lambda f: (f.path, f.line, f.column))
    return findings
