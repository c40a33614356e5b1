"""Scanning bytes, files and trees for leaks.

``scan_bytes`` is the core: for each pattern whose trigger literals occur in
the data (a fast substring search), run its regex and confirm each candidate.
Every byte is read: a NUL byte does not make a file exempt. Data holding a NUL
is also searched for UTF-16 text (runs of ASCII characters each next to a NUL,
either byte order, as a Windows tool writes a key), decoded and scanned with
the same patterns; text without a NUL costs one extra ``memchr``.

There is no size cap: a file (or a blob, see ``scan_stream``) larger than
``WINDOW`` is read in windows that overlap by ``OVERLAP`` bytes, so memory
stays bounded and a match across a window edge is still found whole (a
match longer than the overlap, a base64 run of more than 64 KiB, is found
truncated). The sops structural allowance needs a whole parsed file, so it
applies to files up to ``WINDOW`` only: in a larger file a sops recipient is
a finding like any other.

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
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from nixify.errors import ConfigError
from nixify.git import git_ok, run_git, run_git_bytes
from nixify.leak.patterns import SECRET_KINDS, candidates
from nixify.leak.sopsrule import allowed_by_structure

# Files and blobs up to this size are scanned in one piece; larger ones in
# windows of this size that overlap by OVERLAP bytes (LEAD of them context only).
WINDOW = 32 * 1024 * 1024
OVERLAP = 64 * 1024
LEAD = 256
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


def redact(match: bytes, kind: str = "") -> str:
    """The first few characters of a match and its length; none of a secret's value.

    For a secret kind only the part before a colon (a Nix key's name) may show.
    """
    text = match.decode("utf-8", errors="replace")
    keep = 4 if len(text) > 8 else 2
    if kind in SECRET_KINDS:
        name = text.partition(":")[0] if ":" in text else ""
        keep = min(keep, len(name))
    return f"{text[:keep]}…({len(text)} chars)"


# UTF-16 text: at least 7 printable ASCII characters, each with a NUL after it
# (little-endian) or before it (big-endian); the shortest finding is 7
# characters. Found without a per-byte regex: split the data into its even and
# odd bytes, find runs of NULs in one half, and printable runs in the other
# half at the same places.
_MIN_UTF16 = 7
_NUL_RUN = re.compile(rb"\x00{%d,}" % (_MIN_UTF16 - 1))
_PRINTABLE_RUN = re.compile(rb"[\t\n\r\x20-\x7e]{%d,}" % _MIN_UTF16)

# (start, end, kind, value): the value is what is redacted and fingerprinted,
# the bytes at [start, end) except for UTF-16 text, where it is the decoded text.
_Raw = tuple[int, int, str, bytes]


def _utf16_raw(data: bytes) -> list[_Raw]:
    found: set[_Raw] = set()
    for par in (0, 1):  # the characters' byte parity; the NULs are in the other half
        chars, nuls = data[par::2], data[1 - par :: 2]
        for run in _NUL_RUN.finditer(nuls):
            # A little-endian run at an odd offset has its NULs one slot later.
            lo, hi = max(run.start() - 1, 0), run.end() + 1
            if chars.count(0, lo, hi) >= hi - lo - 1:
                continue  # NULs in both halves: padding, not text
            for text_run in _PRINTABLE_RUN.finditer(chars, lo, hi):
                text, at = text_run.group(), text_run.start()
                for start, end, kind in candidates(text):
                    first = par + 2 * (at + start)
                    found.add((first, first + 2 * (end - start) - 1, kind, text[start:end]))
    return sorted(found)


def _raw(data: bytes, path: str | None) -> list[_Raw]:
    """Every finding's span in ``data``; structural allowances applied when ``path`` is set."""
    direct = sorted(candidates(data))
    if direct and path is not None:
        direct = allowed_by_structure(path, data, direct)
    raw = [(s, e, k, data[s:e]) for s, e, k in direct]
    if b"\0" in data:
        raw.extend(_utf16_raw(data))
        raw.sort()
    return raw


def _finding(path: str, line: int, column: int, kind: str, value: bytes) -> Finding:
    return Finding(path, line, column, kind, redact(value, kind), fingerprint(value))


def scan_bytes(data: bytes, path: str) -> list[Finding]:
    """Every finding in ``data`` (the content of ``path``), structural allowances applied."""
    raw = _raw(data, path)
    findings: list[Finding] = []
    line, pos = 1, 0
    for start, _end, kind, value in raw:
        line += data.count(b"\n", pos, start)
        line_start = data.rfind(b"\n", 0, start) + 1
        pos = start
        findings.append(_finding(path, line, start - line_start + 1, kind, value))
    return findings


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def scan_stream(fh: Readable, path: str) -> list[Finding]:
    """Every finding in what ``fh`` yields until EOF (the content of ``path``).

    Up to ``WINDOW`` bytes this is ``scan_bytes``; beyond, overlapping windows
    (see the module's doc), reading every byte with bounded memory.
    """
    buf = fh.read(WINDOW)
    if len(buf) < WINDOW:
        return scan_bytes(buf, path)
    findings: list[Finding] = []
    base = 0  # stream offset of buf[0]
    accept_from = 0  # matches starting before this were an earlier window's
    line, counted, last_nl = 1, 0, -1  # the line at stream offset ``counted``

    def advance(to: int) -> None:
        nonlocal line, counted, last_nl
        rel = counted - base
        line += buf.count(b"\n", rel, to)
        nl = buf.rfind(b"\n", rel, to)
        if nl != -1:
            last_nl = base + nl
        counted = base + to

    while True:
        more = fh.read(WINDOW)
        # Matches starting in the last OVERLAP bytes are left to the next window.
        cut = len(buf) - OVERLAP if more else len(buf)
        for start, _end, kind, value in _raw(buf, None):
            if base + start < accept_from or start >= cut:
                continue
            advance(start)
            findings.append(_finding(path, line, counted - last_nl, kind, value))
        if not more:
            return findings
        advance(cut)
        accept_from = base + cut
        keep = cut - LEAD  # context for look-behinds and a Nix key's name
        buf, base = buf[keep:] + more, base + keep


def scan_file(path: str) -> list[Finding]:
    try:
        with open(path, "rb") as fh:
            return scan_stream(fh, path)
    except (FileNotFoundError, IsADirectoryError):
        return []
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


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
    proc = run_git(where, ("rev-parse", "--show-toplevel"))
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
    ignored = git_ok(path, "check-ignore", "-q", ".")
    if not ignored and git_toplevel(path) is not None:
        proc = run_git_bytes(
            path,
            ("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--deduplicate"),
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
