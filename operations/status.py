"""The status probe as an explicit run, like a deploy's (``operations/run.py``).

* ``begin_status`` (from an inventory file, before any connection): a ``StatusRun``
  registered on pyinfra's state as a callback handler, so it sees hosts that never
  answer;
* ``open_status`` (from ``status.py``): that run, or one made from the command line
  when the inventory did not begin one;
* ``probe`` (one operation, every selected host in parallel): the host's running,
  booted and profile systems, its known-good records (a record that cannot be read
  is skipped and named, never fatal) and its GC roots;
* ``end`` (the last operation), or the connect callback when no host answered:
  every selected host written out once, answering or not, as a typed
  ``StatusProbe`` (``--data status_out=PATH``, else stdout).

Nothing here runs at interpreter exit, and nothing is kept in module globals.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from pyinfra.api.command import FunctionCommand
from pyinfra.api.operation import operation
from pyinfra.context import ctx_state

from nixify.pipeline.options import RunKind, kind_of, options_from_argv
from nixify.release.status import HostProbe, StatusProbe
from nixify.util import atomic_write
from operations.facts import KnownGoodRecords, PinRoots, SystemState
from operations.run import ConnectWatch, register_on_state


class StatusRun(ConnectWatch):
    """One status probe: the probes gathered so far and where they go."""

    unreachable_reason = "did not answer over SSH"

    def __init__(self, out: Path | None) -> None:
        super().__init__()
        self.out = out
        self.probes: dict[str, HostProbe] = {}
        self.written: StatusProbe | None = None
        self._lock = threading.Lock()
        self._ended = False

    def __repr__(self) -> str:
        return f"StatusRun(out={self.out})"

    def no_host_answered(self, state: Any) -> None:
        self.finish(state)

    # -- the probe ------------------------------------------------------------------

    def probe_host(self, host: Any) -> None:
        role = str(host.data.get("role") or "")
        try:
            system = host.get_fact(SystemState, boot_entry=host.data.get("boot_entry")) or {}
            records = host.get_fact(KnownGoodRecords) or []
            roots = host.get_fact(PinRoots) or {}
        except Exception as exc:  # a fact that fails is this host's error, not the run's
            probe = HostProbe(host=host.name, role=role, reachable=True,
                              error=f"facts failed: {exc}")
        else:
            probe = HostProbe(
                host=host.name,
                role=role,
                reachable=True,
                system=dict(system),
                records=list(records),
                skipped=list(getattr(records, "skipped", [])),
                roots=dict(roots),
            )
        with self._lock:
            self.probes[host.name] = probe

    # -- the end ----------------------------------------------------------------------

    def document(self, state: Any) -> StatusProbe:
        """Every selected host, in inventory order: its probe, or why there is none."""
        hosts: list[HostProbe] = []
        for host in state.inventory if state is not None else ():
            if not state.is_host_in_limit(host):
                continue
            probe = self.probes.get(host.name)
            if probe is None:
                why = self._unreachable.get(host.name)
                if why is None:
                    failed = host in state.failed_hosts or not host.connected
                    why = "did not answer over SSH" if failed else "not probed"
                probe = HostProbe(
                    host=host.name, role=str(host.data.get("role") or ""), reachable=False,
                    error=why,
                )
            hosts.append(probe)
        return StatusProbe(hosts=hosts)

    def finish(self, state: Any) -> None:
        """Once: write every selected host out."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        doc = self.document(state)
        self.written = doc
        if self.out is not None:
            atomic_write(self.out, doc.to_text().encode())
        else:
            sys.stdout.write(doc.to_text())
            sys.stdout.flush()


def status_run_of(state: Any) -> StatusRun | None:
    """The status run registered on pyinfra's ``state``, if any."""
    for handler in getattr(state, "callback_handlers", ()):
        if isinstance(handler, StatusRun):
            return handler
    return None


def _register(run: StatusRun, state: Any) -> StatusRun:
    register_on_state(state, run)
    return run


def begin_status(argv: Sequence[str]) -> None:
    """From an inventory file, before any connection: when ``argv`` runs ``status.py``,
    its run, registered on pyinfra's state. Raises ``NixifyError`` on a bad ``--data``."""
    if kind_of(argv) is not RunKind.STATUS or not ctx_state.isset():  # type: ignore[no-untyped-call]
        return
    state = ctx_state.get()  # type: ignore[no-untyped-call]
    if status_run_of(state) is None:
        _register(StatusRun(options_from_argv(argv).status_out), state)


def open_status(state: Any) -> StatusRun:
    """The status run of this pyinfra process (from ``status.py``)."""
    run = status_run_of(state)
    if run is None:
        run = _register(StatusRun(options_from_argv(sys.argv).status_out), state)
    return run


def _probe(run: StatusRun) -> Any:
    def body(state: Any, host: Any) -> bool:
        run.probe_host(host)
        return True

    return body


def _end(run: StatusRun) -> Any:
    def body(state: Any, host: Any) -> bool:
        run.finish(state)
        return True

    return body


@operation(is_idempotent=False)
def probe(run: StatusRun) -> Generator[FunctionCommand, None, None]:
    """Gather the host's systems, known-good records and GC roots (read-only)."""
    yield FunctionCommand(_probe(run), (), {})


@operation(is_idempotent=False)
def end(run: StatusRun) -> Generator[FunctionCommand, None, None]:
    """The end of the status run: every selected host written out, once."""
    yield FunctionCommand(_end(run), (), {})
