"""Fleet status: per host, what runs, what boots, the newest known-good pin with its
tag and commit, drift, and the pins present. Built from facts gathered on the hosts
(the ``status.py`` deploy) and the ledger; a host that did not answer stays listed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixify.errors import ConfigError
from nixify.nix import is_store_path
from nixify.pipeline.pins import KnownGoodRecord
from nixify.release.ledger import Ledger, LedgerEntry, build_ledger


@dataclass(frozen=True)
class HostProbe:
    """What the status deploy gathered on one host (or that it did not answer)."""

    host: str
    role: str
    reachable: bool
    error: str | None = None
    system: dict[str, str] = field(default_factory=dict)
    records: list[KnownGoodRecord] = field(default_factory=list)
    roots: dict[str, str] = field(default_factory=dict)  # pin name -> closure ("" if dangling)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "role": self.role,
            "reachable": self.reachable,
            "error": self.error,
            "system": self.system,
            "records": [json.loads(r.to_json()) for r in self.records],
            "roots": self.roots,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> HostProbe:
        return cls(
            host=str(raw["host"]),
            role=str(raw.get("role") or ""),
            reachable=bool(raw["reachable"]),
            error=raw.get("error"),
            system={str(k): str(v) for k, v in (raw.get("system") or {}).items()},
            records=[KnownGoodRecord(**r) for r in raw.get("records") or []],
            roots={str(k): str(v) for k, v in (raw.get("roots") or {}).items()},
        )


def read_probes(path: Path) -> list[HostProbe]:
    try:
        raw = json.loads(path.read_text())
        return [HostProbe.from_json(h) for h in raw["hosts"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a status probe file: {exc}") from None


@dataclass(frozen=True)
class HostStatus:
    """One host's line in ``nixify status``."""

    probe: HostProbe
    newest: LedgerEntry | None
    entries: list[LedgerEntry]

    @property
    def host(self) -> str:
        return self.probe.host

    def _path(self, key: str) -> str | None:
        value = self.probe.system.get(key) or ""
        return value if is_store_path(value) else None

    @property
    def running(self) -> str | None:
        return self._path("running")

    @property
    def booted(self) -> str | None:
        return self._path("booted")

    @property
    def profile(self) -> str | None:
        return self._path("profile")

    def drift(self) -> list[str]:
        """Why this host is not simply running its newest known-good closure."""
        if not self.probe.reachable or self.probe.error:
            return []
        out = []
        if self.newest is None:
            out.append("no known-good pin")
        elif self.running != self.newest.closure:
            out.append("running != known-good")
        if self.booted and self.running and self.booted != self.running:
            out.append("booted != running")
        if self.profile and self.running and self.profile != self.running:
            out.append("profile != running")
        for e in self.entries:
            if self.probe.roots.get(e.name) != e.closure:
                out.append(f"pin {e.name} has no GC root")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "role": self.probe.role,
            "reachable": self.probe.reachable,
            "error": self.probe.error,
            "running": self.running,
            "booted": self.booted,
            "profile": self.profile,
            "known_good": self.newest.to_json() if self.newest else None,
            "drift": self.drift(),
            "running_is_known_good": (
                None if not self.probe.reachable or self.newest is None
                else self.running == self.newest.closure
            ),
            "booted_is_running": (
                None if not self.probe.reachable else self.booted == self.running
            ),
            "pins": [e.to_json() | {"gcroot": self.probe.roots.get(e.name) == e.closure}
                     for e in self.entries],
        }


def fleet_status(probes: Sequence[HostProbe], ledger: Ledger | None = None,
                 tags: Sequence[Any] = ()) -> list[HostStatus]:
    """Every probed host's status, in the order given (unreachable hosts included)."""
    if ledger is None:
        ledger = build_ledger({p.host: p.records for p in probes if p.reachable}, tags)
    out = []
    for p in probes:
        entries = ledger.hosts.get(p.host, []) if p.reachable else []
        out.append(HostStatus(p, entries[-1] if entries else None, entries))
    return out


def short(path: str | None) -> str:
    """``/nix/store/<hash>-name`` as ``<hash8>-name``."""
    if not path:
        return "-"
    base = path.removeprefix("/nix/store/")
    return f"{base[:8]}{base[32:]}" if len(base) > 33 and base[32] == "-" else base


def render(statuses: Sequence[HostStatus]) -> str:
    """The human table: one block per host."""
    if not statuses:
        return "no hosts"
    width = max(len(s.host) for s in statuses)
    lines = []
    for s in statuses:
        p = s.probe
        head = f"{s.host:<{width}}  {p.role:<15}"
        if not p.reachable:
            lines.append(f"{head} UNREACHABLE: {p.error or 'did not answer'}")
            continue
        if p.error:
            lines.append(f"{head} ERROR: {p.error}")
            continue
        drift = s.drift()
        lines.append(f"{head} {'DRIFT: ' + '; '.join(drift) if drift else 'ok'}")
        pad = " " * (width + 2)
        lines.append(f"{pad}running  {short(s.running)}")
        if s.booted != s.running:
            lines.append(f"{pad}booted   {short(s.booted)}")
        if s.newest:
            e = s.newest
            lines.append(
                f"{pad}known-good {e.name} {short(e.closure)} "
                f"({e.record.kind}) commit {(e.commit or '-')[:12]} tag {e.tag or '-'}"
            )
        lines.append(f"{pad}pins     {len(s.entries)}: " + ", ".join(
            e.name + ("" if p.roots.get(e.name) == e.closure else " (NO GC ROOT)")
            for e in s.entries))
    up = sum(1 for s in statuses if s.probe.reachable)
    drifting = sum(1 for s in statuses if s.drift())
    lines.append(f"{up}/{len(statuses)} hosts answered; {drifting} with drift")
    return "\n".join(lines)
