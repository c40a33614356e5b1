"""The per-host deploy lock, taken on the target: one deploy of a host at a time.

Every change to the lock runs on the host under ``flock`` on a guard file, so
taking, replacing and releasing are atomic with respect to each other, whoever
runs them. The lock (``/var/lib/nixify/deploy.lock/holder.json``) becomes
visible only complete: its holder record is written in a fresh directory that
is then renamed into place. A stale lock is replaced only by compare-and-swap:
the operator names the digest of the holder record it judged stale, and the
host replaces the lock only if that record is still the one in place. Of many
operators that find the same stale lock, exactly one wins; the others then see
the winner's live lock and are refused, naming it.
"""

from __future__ import annotations

import base64
import shlex
from typing import Any

from nixify.pipeline.lock import LOCK_DIR, LockHolder, lock_is_stale
from nixify.pipeline.report import utc_now
from operations.remote import run as remote
from operations.run import Run

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
            f"  if [ \"$sum\" != {q(replace_digest)} ]; then",
            '    echo "HELD $sum"; printf %s "$cur"; exit 0',
            "  fi",
            f"  rm -rf {q(LOCK_DIR)} || exit 1",
            "fi",
            f"rm -rf {q(new)} && mkdir -p {q(new)} || exit 1",
            f"printf %s {data} | base64 -d > {q(new + '/holder.json')} || exit 1",
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


def acquire_lock(run: Run, host: Any) -> str | None:
    """Take the host's deploy lock. Returns None on success, else why not (naming
    the holder). A stale lock (its deploy is gone) is said so and replaced by
    compare-and-swap."""
    replace = ""
    for _attempt in range(3):
        res = remote(host, take_script(run.lock, replace))
        if not res.ok:
            return f"cannot take the deploy lock: exit {res.rc}: {res.tail()}"
        first, _, rest = res.stdout.partition("\n")
        word, _, digest = first.strip().partition(" ")
        if word == "ACQUIRED":
            run.locked_hosts[host.name] = host
            return None
        if word == "BUSY":
            return f"the deploy lock's guard stayed busy for {GUARD_WAIT}s"
        holder = LockHolder.from_json(rest) if rest.strip() else None
        if holder is not None and holder.token == run.lock.token:
            run.locked_hosts[host.name] = host
            return None
        stale = lock_is_stale(holder, utc_now(), run.lock.machine_id)
        if stale is None:
            assert holder is not None
            return f"deploy lock held by {holder.describe()}"
        who = holder.describe() if holder else "an unreadable lock record"
        run.say(host.name, f"stale deploy lock from {who}: {stale}; replacing it")
        replace = digest
    return "the deploy lock could not be taken (it kept changing)"


def release_lock(run: Run, host: Any) -> None:
    """Release the host's lock if (and only if) this run holds it; a failure to
    release is said (the next run finds the lock stale), never raised."""
    if run.locked_hosts.pop(host.name, None) is None:
        return
    res = remote(host, release_script(run.lock.token))
    if not res.ok:
        run.say(host.name, f"deploy lock not released: exit {res.rc}: {res.tail()}")
