"""Known-good pins: a GC root and a record on the host, bounded in number."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nixify.errors import ConfigError

RECORD_DIR = "/var/lib/nixify/known-good"
PIN_DIR = "/var/lib/nixify/pins"
GCROOT_DIR = "/nix/var/nix/gcroots/nixify"
DEFAULT_KEEP = 5
RECORD_SCHEMA = 1


def record_name(stamp: str, closure: str) -> str:
    """``<UTC>-<hash8>``: sorts by time, names the closure."""
    return f"{stamp}-{closure.removeprefix('/nix/store/')[:8]}"


class RecordError(ConfigError):
    """A record on a host that cannot be read: names the host and the file."""


class KnownGoodRecord(BaseModel):
    """What the host keeps about a closure that passed every gate.

    Read forward-compatibly: a field written by a newer nixify is ignored, so one
    unknown field never breaks a host's rollback.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: int = Field(default=RECORD_SCHEMA, alias="schema")
    name: str
    host: str
    closure: str
    commit: str | None
    dirty: bool | None
    utc: str
    kind: str  # "deploy" | "rollback"
    gates: dict[str, Any] = Field(default_factory=dict)
    tag: str | None = None
    restored_at: str | None = None  # UTC of the last rollback that returned to it

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "known-good record") -> KnownGoodRecord:
        """Parse a record; ``RecordError`` naming ``where`` when it cannot be read."""
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise RecordError(f"{where}: not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise RecordError(f"{where}: not a JSON object")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "record"
            raise RecordError(f"{where}: field {field!r}: {first['msg']}") from None


def plan_pin(
    existing: Sequence[KnownGoodRecord],
    record: KnownGoodRecord,
    keep: int,
    live_tags: frozenset[str] | None,
) -> tuple[KnownGoodRecord, list[str]]:
    """Pins are per closure: the record to write for ``record`` and the names of the
    records to remove.

    * A record of the same closure is replaced (a re-deploy refreshes, never
      duplicates); its release tag is carried over when the new record has none.
    * Of the other closures, the newest ``keep - 1`` stay beside the new one; an
      older one goes, unless a live release tag names it (``live_tags`` None: the
      tags could not be read, so no tagged record goes).
    """
    same = sorted(
        (r for r in existing if r.closure == record.closure and r.name != record.name),
        key=lambda r: r.name,
    )
    tags = [r.tag for r in same if r.tag]
    if record.tag is None and tags:
        record = record.model_copy(update={"tag": tags[-1]})
    remove = [r.name for r in same]
    others = sorted((r for r in existing if r.closure != record.closure), key=lambda r: r.name)
    room = max(keep, 1) - 1
    excess = others[: len(others) - room] if len(others) > room else []
    for rec in excess:
        if rec.tag and (live_tags is None or rec.tag in live_tags):
            continue
        remove.append(rec.name)
    return record, remove


def activation_order(rec: KnownGoodRecord) -> tuple[str, str]:
    """Records in the order they were last made current: a rollback that restored a
    record makes it the host's newest known-good point without moving it in history."""
    return (rec.restored_at or rec.utc, rec.name)


def previous_record(
    records: Sequence[KnownGoodRecord], running: str | None
) -> KnownGoodRecord | None:
    """``rollback --previous``: one step back in history, as ``nixos-rebuild
    --rollback`` does. The position is the record of the running closure (a
    rollback keeps a record's place: it restores, it does not re-deploy); the step
    back is the newest record older than it, of another closure."""
    ordered = sorted(records, key=lambda r: r.name)
    here = [r for r in ordered if r.closure == running]
    if here:
        ordered = [r for r in ordered if r.name < here[-1].name]
    older = [r for r in ordered if r.closure != running]
    return older[-1] if older else None


def pins_to_prune(names: Sequence[str], keep: int) -> list[str]:
    """Which records (by name, oldest first) go so that ``keep`` remain; the newest
    always stays, whatever ``keep`` says."""
    ordered = sorted(names)
    keep = max(keep, 1)
    return ordered[:-keep] if len(ordered) > keep else []
