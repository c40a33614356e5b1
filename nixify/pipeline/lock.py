"""The per-host deploy lock: who holds it, since when, and whether it is stale."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, ValidationError

LOCK_DIR = "/var/lib/nixify/deploy.lock"
STALE_AFTER = timedelta(hours=2)


LOCK_SCHEMA = 1


class LockHolder(BaseModel):
    """Recorded in the lock: the operator machine, user and process of a deploy.
    Read forward-compatibly (fields of a newer nixify are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: int = LOCK_SCHEMA
    operator: str
    machine_id: str
    user: str
    pid: int
    pid_start: str
    since: str
    token: str = ""

    def describe(self) -> str:
        return f"{self.user}@{self.operator} (pid {self.pid}) since {self.since}"

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LockHolder | None:
        """The holder, or None when the record cannot be read."""
        try:
            raw = json.loads(text)
        except ValueError:
            return None
        if not isinstance(raw, dict):
            return None
        try:
            return cls.model_validate(raw)
        except ValidationError:
            return None


def process_start(pid: int) -> str:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), or ''."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            continue
    return os.uname().nodename


def lock_is_stale(holder: LockHolder | None, now: datetime, here: str) -> str | None:
    """Why the lock is stale (``None`` when it is live). ``here`` is this machine's id.

    A lock taken on this machine is stale when its process is gone (or the pid
    was reused); a lock from elsewhere only when it is older than STALE_AFTER.
    An unreadable lock is stale: nothing could ever release it.
    """
    if holder is None:
        return "the lock record is unreadable"
    if holder.machine_id == here:
        if process_start(holder.pid) != holder.pid_start or not holder.pid_start:
            return f"its deploy (pid {holder.pid} on {holder.operator}) is no longer running"
        return None
    try:
        since = datetime.fromisoformat(holder.since)
    except ValueError:
        return "the lock's time is unreadable"
    if now - since > STALE_AFTER:
        return f"it is older than {STALE_AFTER}"
    return None
