"""The allowlist: named exceptions to the leak gate, each with a reason.

File format (``.leak-allowlist`` at the root of the scanned tree by default),
one entry per line, ``#`` starts a comment line::

    PATH-GLOB  KIND  FINGERPRINT  REASON...

``PATH-GLOB`` is matched (``fnmatch``, ``*`` crosses ``/``) against the path
relative to the allowlist's directory; ``KIND`` is a finding kind or ``*``;
``FINGERPRINT`` is the 12-hex fingerprint ``leak-scan`` prints for the match,
or ``*`` for every match of that kind in that one file (a ``*`` fingerprint
needs a glob without wildcards, so no entry can blanket-exclude a tree).
``REASON`` is required: why this value may be published.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from nixify.errors import ConfigError
from nixify.leak.patterns import KINDS
from nixify.leak.scanner import Finding

ALLOWLIST_NAME = ".leak-allowlist"
_FINGERPRINT = re.compile(r"^[0-9a-f]{12}$")
_WILDCARDS = set("*?[")


@dataclass
class AllowEntry:
    glob: str
    kind: str
    fingerprint: str
    reason: str
    lineno: int
    used: int = field(default=0)

    def matches(self, relpath: str, finding: Finding) -> bool:
        if self.kind != "*" and self.kind != finding.kind:
            return False
        if self.fingerprint != "*" and self.fingerprint != finding.fingerprint:
            return False
        return fnmatch.fnmatchcase(relpath, self.glob)


@dataclass
class Allowlist:
    source: Path | None
    base: Path
    entries: list[AllowEntry]

    def allows(self, finding: Finding) -> bool:
        if finding.commit:
            rel = finding.path
        else:
            rel = os.path.relpath(os.path.abspath(finding.path), self.base)
        rel = rel.replace(os.sep, "/")
        for entry in self.entries:
            if entry.matches(rel, finding):
                entry.used += 1
                return True
        return False

    def unused(self) -> list[AllowEntry]:
        return [e for e in self.entries if e.used == 0]


def parse_allowlist(text: str, source: Path) -> list[AllowEntry]:
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split(None, 3)
        where = f"{source}:{lineno}"
        if len(fields) < 4 or not fields[3].strip():
            raise ConfigError(
                f"{where}: an entry is `PATH-GLOB KIND FINGERPRINT REASON...`; "
                "the reason is required"
            )
        glob, kind, fp, reason = fields
        if kind != "*" and kind not in KINDS:
            raise ConfigError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)} or *")
        if fp != "*" and not _FINGERPRINT.match(fp):
            raise ConfigError(f"{where}: fingerprint {fp!r} is not 12 hex digits or *")
        if fp == "*" and _WILDCARDS & set(glob):
            raise ConfigError(
                f"{where}: a * fingerprint needs one exact path, not the glob {glob!r}"
            )
        entries.append(AllowEntry(glob, kind, fp, reason.strip(), lineno))
    return entries


def load_allowlist(path: Path | None, base: Path) -> Allowlist:
    """The allowlist at ``path`` (None: an empty one rooted at ``base``)."""
    if path is None:
        return Allowlist(None, base, [])
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: allowlist not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read allowlist: {exc}") from exc
    return Allowlist(path, path.resolve().parent, parse_allowlist(text, path))
