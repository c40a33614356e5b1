"""The per-host deploy lock, taken on the target: one deploy of a host at a time."""

from __future__ import annotations

import base64
import shlex
from typing import TYPE_CHECKING, Any

from nixify.pipeline.lock import LOCK_DIR, LockHolder, lock_is_stale
from nixify.pipeline.report import utc_now
from operations.remote import run as remote

if TYPE_CHECKING:
    from operations.run import Run

_HOLDER = f"{LOCK_DIR}/holder.json"


def _take(holder: LockHolder) -> str:
    data = shlex.quote(base64.b64encode(holder.to_json().encode()).decode())
    return (
        f"mkdir -p {shlex.quote(LOCK_DIR.rsplit('/', 1)[0])} && "
        f"if mkdir {LOCK_DIR} 2>/dev/null; then "
        f"echo {data} | base64 -d > {_HOLDER}.tmp && mv {_HOLDER}.tmp {_HOLDER} && echo ACQUIRED; "
        f"else echo HELD; cat {_HOLDER} 2>/dev/null; fi"
    )


def acquire_lock(run: Run, host: Any) -> str | None:
    """Take the host's deploy lock. Returns None on success, else why not (naming
    the holder). A stale lock (its deploy was killed) is said so and replaced."""
    for _attempt in range(2):
        res = remote(host, _take(run.lock))
        if not res.ok:
            return f"cannot take the deploy lock: {res.tail()}"
        first, _, rest = res.stdout.partition("\n")
        if first.strip() == "ACQUIRED":
            run.locked_hosts[host.name] = host
            return None
        holder = LockHolder.from_json(rest) if rest.strip() else None
        stale = lock_is_stale(holder, utc_now(), run.lock.machine_id)
        if holder is not None and holder.token == run.lock.token:
            run.locked_hosts[host.name] = host
            return None
        if stale is None:
            assert holder is not None
            return f"deploy lock held by {holder.describe()}"
        who = holder.describe() if holder else "an unknown deploy"
        run.say(host.name, f"stale deploy lock from {who}: {stale}; removing it")
        remote(host, f"rm -rf {LOCK_DIR}")
    return "the deploy lock could not be taken"


def release_lock(run: Run, host: Any) -> None:
    """Release the host's lock if (and only if) this run holds it."""
    if run.locked_hosts.pop(host.name, None) is None:
        return
    token = shlex.quote(f'"token": "{run.lock.token}"')
    remote(host, f"grep -qF {token} {_HOLDER} 2>/dev/null && rm -rf {LOCK_DIR}; true")
