"""Where a generated page comes from: branch @ short revision, build date, and
whether the work tree had uncommitted changes (from nixify.git's helpers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nixify.git import head_state, run_git


@dataclass(frozen=True)
class Provenance:
    branch: str | None
    revision: str | None  # full commit id
    dirty: bool | None
    built: datetime

    @property
    def short(self) -> str:
        return self.revision[:7] if self.revision else "unknown"

    @property
    def line(self) -> str:
        """``Provenance: generated from nixify main @ 0d8ff78 (clean tree); 2026-11-30
        04:15 UTC``."""
        if self.revision is None:
            where = "outside git (no revision)"
        else:
            tree = {True: "dirty tree: uncommitted changes", False: "clean tree"}.get(
                bool(self.dirty)
            )
            where = f"{self.branch or 'detached HEAD'} @ {self.short} ({tree})"
        return f"Provenance: generated from nixify {where}; {self.built:%Y-%m-%d %H:%M} UTC"


def provenance(repo: Path, now: datetime | None = None) -> Provenance:
    """The provenance of a build from the checkout at ``repo``."""
    revision, dirty = head_state(repo)
    branch: str | None = None
    if revision is not None:
        proc = run_git(repo, ("symbolic-ref", "--quiet", "--short", "HEAD"))
        branch = proc.stdout.strip() if proc.returncode == 0 else None
    return Provenance(branch, revision, dirty, now or datetime.now(UTC))
