"""Fleet status: per host, what runs, what boots, the newest known-good pin with its
tag and commit, drift, and the pins present. Built from facts gathered on the hosts
(the ``status.py`` deploy, ``operations/status.py``) and the ledger; a host that did
not answer stays listed.

Two typed documents, each with a schema version and read forward-compatibly (a
field a newer nixify adds is ignored; a record that cannot be read is skipped and
named, never fatal):

* ``StatusProbe``: what the status deploy writes, one ``HostProbe`` per selected host;
* ``FleetStatus``: what ``nixify status --json`` prints, one ``HostLine`` per host.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nixify.errors import ConfigError
from nixify.nix import is_store_path
from nixify.pipeline.pins import KnownGoodRecord, RecordError
from nixify.release.ledger import Ledger, LedgerEntry, build_ledger

STATUS_SCHEMA = 1
"""The schema of both documents; a reader accepts any version (unknown fields are
ignored), a writer writes this one."""

REBOOT_PENDING = "reboot pending"


class HostProbe(BaseModel):
    """What the status deploy gathered on one host (or that it did not answer)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    host: str
    role: str = ""
    reachable: bool
    error: str | None = None
    system: dict[str, str] = Field(default_factory=dict)
    records: list[KnownGoodRecord] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)  # "<file>: <why>", records not read
    roots: dict[str, str] = Field(default_factory=dict)  # pin name -> closure ("" if dangling)

    @model_validator(mode="before")
    @classmethod
    def _lenient_records(cls, raw: Any) -> Any:
        """A record in the probe that does not validate is moved to ``skipped``."""
        if not isinstance(raw, dict) or not isinstance(raw.get("records"), list):
            return raw
        good: list[Any] = []
        skipped = [str(s) for s in raw.get("skipped") or []]
        for index, rec in enumerate(raw["records"]):
            if isinstance(rec, KnownGoodRecord):
                good.append(rec)
                continue
            where = f"{raw.get('host', '?')}: records[{index}]"
            if isinstance(rec, dict) and rec.get("name"):
                where = f"{raw.get('host', '?')}: record {rec['name']}"
            try:
                good.append(KnownGoodRecord.from_json(json.dumps(rec), where=where))
            except RecordError as exc:
                skipped.append(str(exc))
        return {**raw, "records": good, "skipped": skipped}

    def to_json(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json", by_alias=True)
        doc["records"] = [json.loads(r.to_json()) for r in self.records]
        return doc

    @classmethod
    def from_json(cls, raw: Any) -> HostProbe:
        return cls.model_validate(raw)


class StatusProbe(BaseModel):
    """The status deploy's output: every selected host, answering or not."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    schema_version: int = Field(default=STATUS_SCHEMA, alias="schema")
    hosts: list[HostProbe] = Field(default_factory=list)

    def to_text(self) -> str:
        doc = {"schema": self.schema_version, "hosts": [h.to_json() for h in self.hosts]}
        return json.dumps(doc, indent=1) + "\n"


def read_probes(path: Path) -> list[HostProbe]:
    """The hosts of a status probe file, of this schema or a newer one."""
    try:
        return StatusProbe.model_validate_json(path.read_text()).hosts
    except (OSError, ValidationError, ValueError) as exc:
        raise ConfigError(f"{path}: not a status probe file: {_first_error(exc)}") from None


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"field {'.'.join(str(p) for p in err['loc']) or '(document)'!r}: {err['msg']}"
    return str(exc)


class HostLine(BaseModel):
    """One host in ``nixify status --json``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    host: str
    role: str
    reachable: bool
    error: str | None
    running: str | None
    booted: str | None
    profile: str | None
    known_good: dict[str, Any] | None
    drift: list[str]
    reboot_pending: bool = False
    running_is_known_good: bool | None
    booted_is_running: bool | None
    pins: list[dict[str, Any]]
    skipped: list[str] = Field(default_factory=list)


class FleetStatus(BaseModel):
    """``nixify status --json``: every selected host, and every release tag."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    schema_version: int = Field(default=STATUS_SCHEMA, alias="schema")
    hosts: list[HostLine]
    tags: list[dict[str, Any]] = Field(default_factory=list)

    def to_text(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


class HostStatus:
    """One host's line in ``nixify status``."""

    def __init__(
        self, probe: HostProbe, newest: LedgerEntry | None, entries: list[LedgerEntry]
    ) -> None:
        self.probe = probe
        self.newest = newest
        self.entries = entries

    @property
    def host(self) -> str:
        return self.probe.host

    @property
    def answered(self) -> bool:
        return self.probe.reachable and not self.probe.error

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

    @property
    def boots_known_good(self) -> bool:
        """Deployed with ``mode=boot``: the profile is the newest known-good closure and
        the next boot activates it, while the old one still runs."""
        return bool(
            self.newest
            and self.profile == self.newest.closure
            and self.running
            and self.running != self.newest.closure
        )

    @property
    def reboot_pending(self) -> bool:
        """Switched since boot (booted != running), or a boot entry waits: what a
        reboot changes, not drift."""
        if not self.answered:
            return False
        switched = bool(self.booted and self.running and self.booted != self.running)
        return switched or self.boots_known_good

    @property
    def runs_known_good(self) -> bool:
        """Runs its newest known-good closure, or boots into it next."""
        return self.newest is not None and (
            self.running == self.newest.closure or self.boots_known_good
        )

    def drift(self) -> list[str]:
        """Why this host is not simply running its newest known-good closure (a
        pending reboot is not drift)."""
        if not self.answered:
            return []
        out = []
        if self.newest is None:
            out.append("no known-good pin")
        elif not self.runs_known_good:
            out.append("running != known-good")
        if (
            self.profile
            and self.running
            and self.profile != self.running
            and not self.boots_known_good
        ):
            out.append("profile != running")
        for e in self.entries:
            if self.probe.roots.get(e.name) != e.closure:
                out.append(f"pin {e.name} has no GC root")
        return out

    def notes(self) -> list[str]:
        """Drift, then what is pending or was skipped, for the table's last column."""
        if not self.probe.reachable:
            return [self.probe.error or "did not answer"]
        if self.probe.error:
            return [self.probe.error]
        out = self.drift()
        if self.reboot_pending:
            out.append(REBOOT_PENDING)
        if self.probe.skipped:
            n = len(self.probe.skipped)
            out.append(f"{n} record{'s' if n != 1 else ''} skipped")
        return out

    def state(self) -> str:
        if not self.probe.reachable:
            return "UNREACHABLE"
        if self.probe.error:
            return "ERROR"
        return "DRIFT" if self.drift() else "ok"

    def line(self) -> HostLine:
        return HostLine(
            host=self.host,
            role=self.probe.role,
            reachable=self.probe.reachable,
            error=self.probe.error,
            running=self.running,
            booted=self.booted,
            profile=self.profile,
            known_good=self.newest.to_json() if self.newest else None,
            drift=self.drift(),
            reboot_pending=self.reboot_pending,
            running_is_known_good=(
                None
                if not self.probe.reachable or self.newest is None
                else self.running == self.newest.closure
            ),
            booted_is_running=None if not self.probe.reachable else self.booted == self.running,
            pins=[
                e.to_json() | {"gcroot": self.probe.roots.get(e.name) == e.closure}
                for e in self.entries
            ],
            skipped=list(self.probe.skipped),
        )

    def to_json(self) -> dict[str, Any]:
        return self.line().model_dump(mode="json")


def fleet_status(
    probes: Sequence[HostProbe], ledger: Ledger | None = None, tags: Sequence[Any] = ()
) -> list[HostStatus]:
    """Every probed host's status, in the order given (unreachable hosts included)."""
    if ledger is None:
        ledger = build_ledger({p.host: p.records for p in probes if p.reachable}, tags)
    out = []
    for p in probes:
        entries = ledger.hosts.get(p.host, []) if p.reachable else []
        out.append(HostStatus(p, entries[-1] if entries else None, entries))
    return out


def fleet_document(statuses: Sequence[HostStatus], ledger: Ledger) -> FleetStatus:
    return FleetStatus(hosts=[s.line() for s in statuses], tags=ledger.to_json()["tags"])


def short(path: str | None) -> str:
    """``/nix/store/<hash>-name`` as ``<hash8>-name``."""
    if not path:
        return "-"
    base = path.removeprefix("/nix/store/")
    return f"{base[:8]}{base[32:]}" if len(base) > 33 and base[32] == "-" else base


HEADERS = ("HOST", "ROLE", "STATE", "RUNNING", "KNOWN-GOOD", "TAG", "PINS", "NOTES")


def _row(s: HostStatus) -> tuple[str, ...]:
    p = s.probe
    if not s.answered:
        return (s.host, p.role, s.state(), "-", "-", "-", "-", "; ".join(s.notes()))
    e = s.newest
    pins = str(len(s.entries))
    missing = sum(1 for x in s.entries if p.roots.get(x.name) != x.closure)
    if missing:
        pins += f" ({missing} without GC root)"
    return (
        s.host,
        p.role,
        s.state(),
        short(s.running),
        f"{e.name} ({e.record.kind})" if e else "-",
        (e.tag or "-") if e else "-",
        pins,
        "; ".join(s.notes()) or "-",
    )


def render(statuses: Sequence[HostStatus]) -> str:
    """The human table: a header, one line per host, a summary line; then each
    record a host could not read, named with its host."""
    if not statuses:
        return "no hosts"
    rows = [HEADERS, *(_row(s) for s in statuses)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS) - 1)]
    lines = [
        "  ".join(f"{c:<{w}}" for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
        for r in rows
    ]
    lines = [line.rstrip() for line in lines]
    up = sum(1 for s in statuses if s.probe.reachable)
    drifting = sum(1 for s in statuses if s.drift())
    pending = sum(1 for s in statuses if s.reboot_pending)
    lines.append(
        f"{up}/{len(statuses)} hosts answered; {drifting} with drift; {pending} reboot pending"
    )
    for s in statuses:
        for why in s.probe.skipped:
            lines.append(f"{s.host}: skipped record {why}")
    return "\n".join(lines)
