"""What a deploy run did, per host and per gate: printed, and written as JSON.

The report is typed (pydantic) and carries a schema version; a reader of an
older or newer report ignores what it does not know.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nixify.util import atomic_write

REPORT_SCHEMA = 2
GATES: tuple[str, ...] = ("build", "diff", "dry-activate", "switch-test", "known-good")


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_stamp(when: datetime | None = None) -> str:
    """A compact UTC timestamp for file and tag names: 20261130T041502Z."""
    return (when or utc_now()).strftime("%Y%m%dT%H%M%SZ")


class GateOutcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class HostStatus(StrEnum):
    """A host's final state in a run."""

    PENDING = "pending"  # still running (never in a finished report)
    DEPLOYED = "deployed"  # every gate passed, pinned
    DRY_RUN = "dry-run"  # gates 1-3 passed, nothing activated
    FAILED = "failed"  # a gate failed; the host is on its known-good system
    SKIPPED = "skipped"  # not deployed, by design (no builder, ...)
    ROLLED_BACK = "rolled-back"  # activation failed and the return to known-good succeeded
    UNREACHABLE = "unreachable"  # the host did not answer (at which gate: the reason says)

    @property
    def ok(self) -> bool:
        return self in (HostStatus.DEPLOYED, HostStatus.DRY_RUN)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)


class GateResult(_Model):
    """One gate on one host: passed, failed or skipped, when, how long, its evidence."""

    result: GateOutcome
    seconds: float = 0.0
    detail: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)
    started: str | None = None  # UTC, ISO 8601


class HostReport(_Model):
    """One host's path through the gates."""

    host: str
    role: str
    selected: bool = True
    mode: str = "switch"
    builder: str | None = None
    closure: str | None = None
    previous: str | None = None
    diff: dict[str, int] | None = None
    gates: dict[str, GateResult] = Field(default_factory=dict)
    known_good: str | None = None
    status: HostStatus = HostStatus.PENDING
    reason: str | None = None

    def gate(self, name: str, result: GateResult) -> None:
        self.gates[name] = result

    def fail(self, status: HostStatus | str, reason: str) -> None:
        self.status = HostStatus(status)
        self.reason = reason


class RunReport(_Model):
    """A whole run: who, what commit, when, every host."""

    schema_version: int = REPORT_SCHEMA
    kind: str  # "deploy" | "rollback"
    mode: str
    started: str
    commit: str | None = None
    dirty: bool | None = None
    operator: str = ""
    finished: str | None = None
    hosts: dict[str, HostReport] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.hosts) and all(h.status.ok for h in self.hosts.values())

    def counts(self) -> dict[str, int]:
        """Hosts by final state."""
        return dict(sorted(Counter(h.status.value for h in self.hosts.values()).items()))

    def to_json(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        doc["counts"] = self.counts()
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RunReport:
        return cls.model_validate(doc)

    def write(self, directory: Path) -> Path:
        """Write ``<kind>-<UTC>.json`` and ``latest.json`` atomically."""
        stamp = self.started.replace("-", "").replace(":", "").split(".")[0]
        path = directory / f"{self.kind}-{stamp}.json"
        text = json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"
        for target in (path, directory / "latest.json"):
            atomic_write(target, text, sync_dir=False)
        return path
