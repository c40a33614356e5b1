"""Scanning bytes, files and trees for leaks.

``scan_bytes`` is the core: for each pattern whose trigger literals occur in
the data (a fast substring search), run its regex and confirm each candidate.
``scan_files`` spreads files over a process pool when there is enough to scan;
``tree_files`` lists what a path holds: in a git work tree the tracked files
plus untracked files that are not ignored, elsewhere every regular file.
Structural allowances (sops metadata) are applied per file, in the worker,
because they need the file's content.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from nixify.errors import ConfigError
from nixify.leak.patterns import PATTERNS, Pattern, confirm
from nixify.leak.sopsrule import allowed_by_structure

BINARY_SNIFF = 8192
# Below this many bytes in total, a pool costs more than it saves.
PARALLEL_THRESHOLD = 16 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    """One leak: where it is, what kind, and the match with its secret part hidden."""

    path: str
    line: int
    column: int
    kind: str
    redacted: str
    fingerprint: str
    commit: str = ""  # set by history mode: the commit that added the blob

    def as_dict(self) -> dict[str, str | int]:
        return asdict(self)

    def render(self) -> str:
        where = f"{self.commit}:{self.path}" if self.commit else self.path
        return (
            f"{where}:{self.line}:{self.column}: {self.kind}: {self.redacted} "
            f"[{self.fingerprint}]"
        )


def fingerprint(match: bytes) -> str:
    """A short stable name for a matched value (for allowlist entries), not the value."""
    return hashlib.sha256(match).hexdigest()[:12]


def redact(match: bytes) -> str:
    text = match.decode("utf-8", errors="replace")
    keep = 4 if len(text) > 8 else 2
    return f"{text[:keep]}…({len(text)} chars)"


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:BINARY_SNIFF]


ANCHOR_HITS_BEFORE_FALLBACK = 256


def _anchored(pattern: Pattern, data: bytes) -> Iterator[re.Match[bytes]]:
    """Matches of ``pattern`` tried only where its anchor literal occurs.

    Many anchor hits (a run of the literal, say) would make the Python loop
    slow; past a few hundred, the regex's own scan takes over from there.
    """
    anchor, back = pattern.triggers[0], pattern.anchor_back or 0
    hit = data.find(anchor)
    hits = 0
    last_end = 0
    while hit != -1:
        hits += 1
        if hits > ANCHOR_HITS_BEFORE_FALLBACK:
            yield from pattern.regex.finditer(data, max(last_end, hit - back))
            return
        if hit >= back and hit - back >= last_end:
            m = pattern.regex.match(data, hit - back)
            if m is not None:
                last_end = m.end()
                yield m
        hit = data.find(anchor, hit + 1)


def scan_bytes(data: bytes, path: str) -> list[Finding]:
    """Every finding in ``data`` (the content of ``path``), structural allowances applied."""
    if is_binary(data):
        return []
    raw: list[tuple[int, int, str]] = []
    for pattern in PATTERNS:
        if pattern.anchor_back is not None:
            for m in _anchored(pattern, data):
                kind = confirm(pattern, data, m)
                if kind is not None:
                    raw.append((m.start(), m.end(), kind))
            continue
        if not any(t in data for t in pattern.triggers):
            continue
        for m in pattern.regex.finditer(data):
            kind = confirm(pattern, data, m)
            if kind is not None:
                raw.append((m.start(), m.end(), kind))
    if not raw:
        return []
    raw.sort()
    raw = allowed_by_structure(path, data, raw)
    findings: list[Finding] = []
    line, line_start, pos = 1, 0, 0
    for start, end, kind in raw:
        line += data.count(b"\n", pos, start)
        nl = data.rfind(b"\n", 0, start)
        line_start = nl + 1
        pos = start
        match = data[start:end]
        findings.append(
            Finding(path, line, start - line_start + 1, kind, redact(match), fingerprint(match))
        )
    return findings


def scan_file(path: str) -> list[Finding]:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, IsADirectoryError):
        return []
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return scan_bytes(data, path)


def _scan_chunk(paths: Sequence[str]) -> list[Finding]:
    out: list[Finding] = []
    for p in paths:
        out.extend(scan_file(p))
    return out


def _chunks(paths: Sequence[str], sizes: Sequence[int], n: int) -> list[list[str]]:
    """About ``n`` lists of paths with similar byte totals (largest first, greedy)."""
    bins: list[list[str]] = [[] for _ in range(n)]
    totals = [0] * n
    for size, path in sorted(zip(sizes, paths, strict=True), reverse=True):
        i = totals.index(min(totals))
        bins[i].append(path)
        totals[i] += size
    return [b for b in bins if b]


def scan_files(paths: Sequence[str], jobs: int | None = None) -> list[Finding]:
    """Findings in all ``paths``, in path order; parallel when the total is large."""
    sizes = []
    for p in paths:
        try:
            sizes.append(os.path.getsize(p))
        except OSError:
            sizes.append(0)
    workers = jobs if jobs is not None else (os.cpu_count() or 1)
    if workers <= 1 or sum(sizes) < PARALLEL_THRESHOLD or len(paths) < 2:
        findings = _scan_chunk(paths)
    else:
        # Several chunks per worker so one slow chunk does not serialise the end.
        chunks = _chunks(paths, sizes, workers * 4)
        findings = []
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for part in pool.map(_scan_chunk, chunks):
                findings.extend(part)
    findings.sort(key=lambda f: (f.path, f.line, f.column))
    return findings


def git_toplevel(path: Path) -> Path | None:
    """The work tree containing ``path``, or None outside git."""
    where = path if path.is_dir() else path.parent
    proc = subprocess.run(
        ["git", "-C", str(where), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None
    return Path(proc.stdout.strip())


def tree_files(path: Path) -> list[str]:
    """The files under ``path`` the gate scans, as paths joined onto ``path``.

    In a git work tree: tracked files plus untracked ones git does not ignore.
    A directory named explicitly that git ignores as a whole (``.lab/``) and
    anything outside git: every regular file. Symlinks are not followed.
    """
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    if path.is_file():
        return [str(path)]
    ignored = subprocess.run(
        ["git", "-C", str(path), "check-ignore", "-q", "."], capture_output=True
    ).returncode == 0
    if not ignored and git_toplevel(path) is not None:
        proc = subprocess.run(
            ["git", "-C", str(path), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard", "--deduplicate"],
            capture_output=True,
        )
        if proc.returncode != 0:
            raise ConfigError(f"{path}: git ls-files failed: {proc.stderr.decode().strip()}")
        names = [n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
        out = []
        for name in names:
            full = os.path.join(str(path), name) if str(path) != "." else name
            if os.path.isfile(full) and not os.path.islink(full):
                out.append(full)
        return out
    out = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            if os.path.isfile(full) and not os.path.islink(full):
                out.append(full)
    return out


def scan_paths(paths: Iterable[Path], jobs: int | None = None) -> list[Finding]:
    files: list[str] = []
    seen: set[str] = set()
    for p in paths:
        for f in tree_files(p):
            if f not in seen:
                seen.add(f)
                files.append(f)
    return scan_files(files, jobs)
