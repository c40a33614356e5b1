"""The per-host deploy lock: who holds it, since when, and whether it is stale."""

from __future__ import annotations

import base64
import json
import os
import shlex
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, ValidationError

from nixify.transport import Transport

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


def lock_is_stale(
    holder: LockHolder | None, now: datetime, here: str, session: str = "unknown"
) -> str | None:
    """Why the lock is stale (``None`` when it is live). ``here`` is this machine's id;
    ``session`` is what the host says of the SSH session that took the lock
    (``yes``: still connected, ``no``: gone, ``unknown``: not recorded).

    A lock taken on this machine is stale when its process is gone (or the pid
    was reused). A lock from elsewhere is stale when the host sees that its
    deploy's SSH session is gone (a killed operator's connection ends with it);
    failing that, when it is older than STALE_AFTER. An unreadable lock is stale:
    nothing could ever release it.
    """
    if holder is None:
        return "the lock record is unreadable"
    if holder.machine_id == here:
        if process_start(holder.pid) != holder.pid_start or not holder.pid_start:
            return f"its deploy (pid {holder.pid} on {holder.operator}) is no longer running"
        return None
    if session == "no":
        return f"its deploy's SSH session from {holder.operator} is gone"
    if session == "yes":
        return None
    try:
        since = datetime.fromisoformat(holder.since)
    except ValueError:
        return "the lock's time is unreadable"
    if now - since > STALE_AFTER:
        return f"it is older than {STALE_AFTER}"
    return None


# -- taking and releasing it on a host ----------------------------------------------------
#
# Every change to the lock runs on the host under ``flock`` on a guard file, so
# taking, replacing and releasing are atomic with respect to each other, whoever
# runs them. The lock (``LOCK_DIR/holder.json``) becomes visible only complete:
# its holder record is written in a fresh directory that is then renamed into
# place. A stale lock is replaced only by compare-and-swap: the operator names
# the digest of the holder record it judged stale, and the host replaces the
# lock only if that record is still the one in place. Of many operators that
# find the same stale lock, exactly one wins; the others then see the winner's
# live lock and are refused, naming it.

_HOLDER = f"{LOCK_DIR}/holder.json"
_PARENT = LOCK_DIR.rsplit("/", 1)[0]
_GUARD = f"{_PARENT}/.deploy.lock.guard"
GUARD_WAIT = 30  # seconds another operator's lock step may take


def take_script(holder: LockHolder, replace_digest: str = "") -> str:
    """Take the lock; with ``replace_digest``, replace a lock whose holder record has
    that digest. Prints ``ACQUIRED``, or ``HELD <digest>`` and the record in place,
    or ``BUSY`` when the guard could not be had."""
    data = shlex.quote(base64.b64encode(holder.to_json().encode()).decode())
    new = f"{_PARENT}/.deploy.lock.new.{holder.token}"
    q = shlex.quote
    return "\n".join(
        [
            f"mkdir -p {q(_PARENT)} || exit 1",
            f"exec 9>>{q(_GUARD)} || exit 1",
            f"flock -w {GUARD_WAIT} 9 || {{ echo BUSY; exit 0; }}",
            f"if [ -e {q(LOCK_DIR)} ]; then",
            f"  cur=$(cat {q(_HOLDER)} 2>/dev/null; printf x)",
            '  cur="${cur%x}"',
            "  sum=$(printf %s \"$cur\" | sha256sum | cut -d' ' -f1)",
            # is the SSH session that took it still connected? (the holder's link here)
            f"  alive=unknown; read -r spid sstart < {q(LOCK_DIR + '/session')} 2>/dev/null"
            " && { alive=no; [ \"$(cut -d' ' -f22 /proc/$spid/stat 2>/dev/null)\" = "
            "\"$sstart\" ] && alive=yes; }",
            f"  if [ \"$sum\" != {q(replace_digest)} ]; then",
            '    echo "HELD $sum $alive"; printf %s "$cur"; exit 0',
            "  fi",
            f"  rm -rf {q(LOCK_DIR)} || exit 1",
            "fi",
            f"rm -rf {q(new)} && mkdir -p {q(new)} || exit 1",
            f"printf %s {data} | base64 -d > {q(new + '/holder.json')} || exit 1",
            # the SSH session of the deploy that holds it: gone means the deploy is gone
            f"echo \"$PPID $(cut -d' ' -f22 /proc/$PPID/stat)\" > {q(new + '/session')}",
            f"sync {q(new + '/holder.json')} 2>/dev/null",
            f"mv -T {q(new)} {q(LOCK_DIR)} && echo ACQUIRED",
        ]
    )


def release_script(token: str) -> str:
    q = shlex.quote
    return "\n".join(
        [
            f"[ -d {q(LOCK_DIR)} ] || exit 0",
            f"exec 9>>{q(_GUARD)} || exit 1",
            f"flock -w {GUARD_WAIT} 9 || exit 1",
            f"grep -qF {q(chr(34) + 'token' + chr(34) + ': ' + chr(34) + token + chr(34))} "
            f"{q(_HOLDER)} 2>/dev/null || exit 0",
            f"rm -rf {q(LOCK_DIR)}",
        ]
    )


def take_lock(
    transport: Transport,
    holder: LockHolder,
    say: Callable[[str], None],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> str | None:
    """Take the deploy lock on ``transport``'s host for ``holder``. None on success,
    else why not (naming the holder). A stale lock is said so and replaced by
    compare-and-swap."""
    replace = ""
    for _attempt in range(3):
        res = transport.run(take_script(holder, replace))
        if not res.ok:
            return f"cannot take the deploy lock: exit {res.rc}: {res.tail()}"
        first, _, rest = res.stdout.partition("\n")
        word, _, detail = first.strip().partition(" ")
        digest, _, session = detail.partition(" ")
        if word == "ACQUIRED":
            return None
        if word == "BUSY":
            return f"the deploy lock's guard stayed busy for {GUARD_WAIT}s"
        current = LockHolder.from_json(rest) if rest.strip() else None
        if current is not None and current.token == holder.token:
            return None
        stale = lock_is_stale(current, now(), holder.machine_id, session or "unknown")
        if stale is None:
            assert current is not None
            return f"deploy lock held by {current.describe()}"
        who = current.describe() if current else "an unreadable lock record"
        say(f"stale deploy lock from {who}: {stale}; replacing it")
        replace = digest
    return "the deploy lock could not be taken (it kept changing)"


def drop_lock(transport: Transport, token: str) -> str | None:
    """Release the lock if ``token`` holds it; None, or why it could not be released."""
    res = transport.run(release_script(token))
    return None if res.ok else f"exit {res.rc}: {res.tail()}"
