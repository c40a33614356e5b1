"""What a deploy run did, per host and per gate: printed, and written as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GATES: tuple[str, ...] = ("build", "diff", "dry-activate", "switch-test", "known-good")
GATE_TITLES = {
    "build": "1 build",
    "diff": "2 diff",
    "dry-activate": "3 dry-activate",
    "switch-test": "4 switch-test",
    "known-good": "5 known-good",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_stamp(when: datetime | None = None) -> str:
    """A compact UTC timestamp for file and tag names: 20261130T041502Z."""
    return (when or utc_now()).strftime("%Y%m%dT%H%M%SZ")


@dataclass
class GateResult:
    """One gate on one host: passed, failed or skipped, how long, and its evidence."""

    result: str  # "passed" | "failed" | "skipped"
    seconds: float = 0.0
    detail: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class HostReport:
    """One host's path through the gates."""

    host: str
    role: str
    selected: bool = True
    mode: str = "switch"
    builder: str | None = None
    closure: str | None = None
    previous: str | None = None
    diff: dict[str, int] | None = None
    gates: dict[str, GateResult] = field(default_factory=dict)
    known_good: str | None = None
    status: str = "pending"  # pending | deployed | dry-run | failed | skipped | rolled-back
    reason: str | None = None

    def gate(self, name: str, result: GateResult) -> None:
        self.gates[name] = result

    def fail(self, status: str, reason: str) -> None:
        self.status = status
        self.reason = reason


@dataclass
class RunReport:
    """A whole run: who, what commit, when, every host."""

    kind: str  # "deploy" | "rollback"
    mode: str
    started: str
    commit: str | None = None
    dirty: bool | None = None
    operator: str = ""
    finished: str | None = None
    hosts: dict[str, HostReport] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(h.status in ("deployed", "dry-run") for h in self.hosts.values())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, directory: Path) -> Path:
        """Write ``<kind>-<UTC>.json`` and ``latest.json`` atomically."""
        directory.mkdir(parents=True, exist_ok=True)
        stamp = self.started.replace("-", "").replace(":", "").split(".")[0]
        path = directory / f"{self.kind}-{stamp}.json"
        text = json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"
        for target in (path, directory / "latest.json"):
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text)
            os.replace(tmp, target)
        return path

    def summary_table(self) -> str:
        """The table printed at the end of a run: one row per host, one column per gate."""
        names = sorted(self.hosts)
        if not names:
            return "no hosts"
        width = max(len(n) for n in names)
        marks = {"passed": "ok", "failed": "FAIL", "skipped": "-"}
        header = f"{'host':<{width}}  " + "  ".join(f"{GATE_TITLES[g]:<14}" for g in GATES)
        lines = [header + "  status", "-" * (len(header) + 8)]
        for name in names:
            h = self.hosts[name]
            cells = []
            for g in GATES:
                gr = h.gates.get(g)
                cells.append(f"{(marks.get(gr.result, gr.result) if gr else '.'):<14}")
            status = h.status + (f": {h.reason}" if h.reason else "")
            lines.append(f"{name:<{width}}  " + "  ".join(cells) + "  " + status)
        done = sum(1 for h in self.hosts.values() if h.status in ("deployed", "dry-run"))
        lines.append(f"{done}/{len(names)} hosts passed every gate they ran")
        return "\n".join(lines)
