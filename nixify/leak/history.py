"""History mode: every blob reachable from any ref or reflog entry of a repo.

A key committed and later deleted is still published by the history; this
mode reads each distinct blob once (``git cat-file --batch``), scans it, and
names the commit that introduced each leaking blob.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from nixify.errors import ConfigError
from nixify.leak.scanner import Finding, scan_bytes


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True)
    if proc.returncode != 0:
        raise ConfigError(f"{repo}: git {args[0]} failed: {proc.stderr.decode().strip()}")
    return proc.stdout


ALL_HISTORY: tuple[str, ...] = ("--all", "--reflog")


def history_blobs(repo: Path, revs: tuple[str, ...] = ALL_HISTORY) -> dict[str, str]:
    """Blob id -> the first path it was seen at, over ``revs`` (all refs and reflogs)."""
    out = _git(repo, "rev-list", "--objects", *revs, "--filter=object:type=blob")
    blobs: dict[str, str] = {}
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        sha, sep, path = line.partition(" ")
        if sep and sha not in blobs:
            blobs[sha] = path
    return blobs


def _read_blobs(repo: Path, shas: list[str]) -> dict[str, bytes]:
    out = _git(repo, "cat-file", "--batch", stdin="".join(s + "\n" for s in shas).encode())
    contents: dict[str, bytes] = {}
    pos = 0
    while pos < len(out):
        nl = out.index(b"\n", pos)
        header = out[pos:nl].split()
        sha, size = header[0].decode(), int(header[2])
        contents[sha] = out[nl + 1 : nl + 1 + size]
        pos = nl + 1 + size + 1
    return contents


def introducing_commit(repo: Path, blob: str) -> str:
    """The oldest commit (short id) whose diff adds or removes ``blob``."""
    out = _git(repo, "log", "--all", "--reflog", "--format=%h", f"--find-object={blob}")
    commits = out.decode().split()
    return commits[-1] if commits else blob[:7]


def scan_history(repo: Path, revs: tuple[str, ...] = ALL_HISTORY) -> list[Finding]:
    """Findings in every blob reachable from ``revs`` (rev-list syntax, e.g. ``new ^old``)."""
    blobs = history_blobs(repo, revs)
    findings: list[Finding] = []
    shas = sorted(blobs)
    for i in range(0, len(shas), 2000):
        batch = shas[i : i + 2000]
        for sha, data in _read_blobs(repo, batch).items():
            found = scan_bytes(data, blobs[sha])
            if not found:
                continue
            commit = introducing_commit(repo, sha)
            findings.extend(
                Finding(f.path, f.line, f.column, f.kind, f.redacted, f.fingerprint, commit)
                for f in found
            )
    findings.sort(key=lambda f: (f.path, f.commit, f.line, f.column))
    return findings
