"""Known-good pins: a GC root and a record on the host, bounded in number."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

RECORD_DIR = "/var/lib/nixify/known-good"
PIN_DIR = "/var/lib/nixify/pins"
GCROOT_DIR = "/nix/var/nix/gcroots/nixify"
DEFAULT_KEEP = 5


def record_name(stamp: str, closure: str) -> str:
    """``<UTC>-<hash8>``: sorts by time, names the closure."""
    return f"{stamp}-{closure.removeprefix('/nix/store/')[:8]}"


@dataclass(frozen=True)
class KnownGoodRecord:
    """What the host keeps about a closure that passed every gate."""

    name: str
    host: str
    closure: str
    commit: str | None
    dirty: bool | None
    utc: str
    kind: str  # "deploy" | "rollback"
    gates: dict[str, Any] = field(default_factory=dict)
    tag: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> KnownGoodRecord:
        raw = json.loads(text)
        return cls(**raw)


def pins_to_prune(names: Sequence[str], keep: int) -> list[str]:
    """Which records (by name, oldest first) go so that ``keep`` remain; the newest
    always stays, whatever ``keep`` says."""
    ordered = sorted(names)
    keep = max(keep, 1)
    return ordered[:-keep] if len(ordered) > keep else []
