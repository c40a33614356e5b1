"""The evidence a release tag carries: per host, the closure, the diff summary, each
gate's result and the known-good pin. Readable first, with a JSON block after a
marker line so the ledger can read it back from git alone."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from nixify.pipeline.pins import GCROOT_DIR
from nixify.pipeline.report import GATES, HostReport

MARKER = "--- nixify release evidence (json) ---"
MAX_CHANGES = 20


@dataclass(frozen=True)
class HostEvidence:
    """One host's proof that its closure passed every gate."""

    host: str
    role: str
    closure: str
    previous: str | None
    builder: str | None
    known_good: str
    gcroot: str
    diff: dict[str, int]
    changes: list[str]
    gates: dict[str, dict[str, Any]]

    @classmethod
    def from_report(cls, rep: HostReport) -> HostEvidence:
        if not rep.closure or not rep.known_good:
            raise ValueError(f"{rep.host}: no closure or known-good pin to release")
        changes: list[str] = []
        diff_gate = rep.gates.get("diff")
        raw = diff_gate.evidence.get("diff") if diff_gate else None
        if isinstance(raw, Mapping):
            for pkg in raw.get("packages", []):
                old = ", ".join(pkg.get("old_versions", [])) or "-"
                new = ", ".join(pkg.get("new_versions", [])) or "-"
                changes.append(f"{pkg.get('name')}: {old} -> {new}")
            changes += [f"+{a.get('name')} {', '.join(a.get('versions', []))}".rstrip()
                        for a in raw.get("added", [])]
            changes += [f"-{r.get('name')} {', '.join(r.get('versions', []))}".rstrip()
                        for r in raw.get("removed", [])]
        return cls(
            host=rep.host,
            role=rep.role,
            closure=rep.closure,
            previous=rep.previous,
            builder=rep.builder,
            known_good=rep.known_good,
            gcroot=f"{GCROOT_DIR}/{rep.known_good}",
            diff=dict(rep.diff or {}),
            changes=changes[:MAX_CHANGES],
            gates={
                g: {"result": r.result, "seconds": r.seconds, "detail": r.detail}
                for g, r in rep.gates.items()
            },
        )

    def render(self) -> list[str]:
        d = self.diff
        diff = (
            f"{d.get('changed', 0)} changed, {d.get('added', 0)} added, "
            f"{d.get('removed', 0)} removed, {d.get('size_delta', 0):+d} bytes"
            if d
            else "no running system to compare with"
        )
        gates = ", ".join(
            f"{g} {self.gates[g]['result']} ({self.gates[g]['seconds']:.1f}s)"
            for g in GATES
            if g in self.gates
        )
        lines = [
            f"{self.host} ({self.role})",
            f"  closure:    {self.closure}",
            f"  previous:   {self.previous or '-'}",
            f"  built on:   {self.builder or '-'}",
            f"  diff:       {diff}",
        ]
        lines += [f"              {c}" for c in self.changes]
        lines += [f"  gates:      {gates}", f"  known-good: {self.known_good} ({self.gcroot})"]
        return lines


@dataclass(frozen=True)
class ReleaseEvidence:
    """Everything a release tag's message records."""

    target: str
    target_kind: str  # "role" | "host"
    commit: str
    kind: str
    mode: str
    operator: str
    started: str
    hosts: list[HostEvidence] = field(default_factory=list)

    def message(self, tag: str) -> str:
        head = (
            f"{tag}\n\n"
            f"Validated {self.target_kind} {self.target}: {len(self.hosts)} host(s) passed "
            f"every gate ({', '.join(GATES)}) at {self.commit[:12]}.\n"
            f"run: {self.kind}, mode {self.mode}, by {self.operator}, started {self.started}\n"
        )
        body = "\n".join(line for h in self.hosts for line in h.render())
        data = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return f"{head}\n{body}\n\n{MARKER}\n{data}\n"

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ReleaseEvidence:
        hosts = [HostEvidence(**h) for h in raw.get("hosts", [])]
        fields = {k: raw[k] for k in
                  ("target", "target_kind", "commit", "kind", "mode", "operator", "started")}
        return cls(hosts=hosts, **fields)


def parse_message(message: str) -> ReleaseEvidence | None:
    """The evidence in a release tag's message, or None if it holds none (or it is
    not readable: a hand-made tag is listed, but carries no evidence)."""
    _, marker, data = message.partition(MARKER)
    if not marker:
        return None
    try:
        return ReleaseEvidence.from_json(json.loads(data))
    except (ValueError, TypeError, KeyError):
        return None


def hosts_evidence(reports: Sequence[HostReport]) -> list[HostEvidence]:
    return [HostEvidence.from_report(r) for r in sorted(reports, key=lambda r: r.host)]
