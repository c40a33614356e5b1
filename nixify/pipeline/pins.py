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


def pins_to_prune(names: Sequence[str], keep: int) -> list[str]:
    """Which records (by name, oldest first) go so that ``keep`` remain; the newest
    always stays, whatever ``keep`` says."""
    ordered = sorted(names)
    keep = max(keep, 1)
    return ordered[:-keep] if len(ordered) > keep else []
