"""The per-host deploy lock in a run: taken at preflight, released when the host is
done. The lock itself (compare-and-swap under ``flock`` on the host) is
``nixify.pipeline.lock``."""

from __future__ import annotations

from typing import Any

from nixify.pipeline.lock import drop_lock, take_lock
from nixify.transport import PyinfraTransport
from operations.run import Run


def acquire_lock(run: Run, host: Any) -> str | None:
    """Take the host's deploy lock. Returns None on success, else why not (naming
    the holder)."""
    why = take_lock(PyinfraTransport(host), run.lock, lambda m: run.say(host.name, m))
    if why is None:
        run.locked_hosts[host.name] = host
    return why


def release_lock(run: Run, host: Any) -> None:
    """Release the host's lock if (and only if) this run holds it; a failure to
    release is said (the next run finds the lock stale), never raised."""
    if run.locked_hosts.pop(host.name, None) is None:
        return
    why = drop_lock(PyinfraTransport(host), run.lock.token)
    if why is not None:
        run.say(host.name, f"deploy lock not released: {why}")
