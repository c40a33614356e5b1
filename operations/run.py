"""One deploy (or rollback) run: its options, its report, its hosts' final states.

A run is an explicit object, made and ended by ``operations.lifecycle``: the
inventory begins it before any connection and registers it on pyinfra's state
as a callback handler (so it sees hosts that never answer); the deploy file
fetches it and hands it to every gate; the deploy file's last operation ends it.

Gates never fail a host in pyinfra's eyes (pyinfra stops the whole run when no
host is left): a host that fails a gate is marked in the run's report and later
gates pass it by. At the end, the hosts that did not pass are handed to pyinfra
as failed, so the command exits non-zero.
"""

from __future__ import annotations

import getpass
import os
import secrets as _secrets
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyinfra.api.state import BaseStateCallback
from rich.console import Console

from nixify.diff.drift import DriftPolicy
from nixify.errors import NixifyError
from nixify.git import head_state
from nixify.pipeline.activation import DEFAULT_CONFIRM_TIMEOUT
from nixify.pipeline.lock import LockHolder, machine_id, process_start
from nixify.pipeline.options import Mode, RunOptions
from nixify.pipeline.pins import KnownGoodRecord
from nixify.pipeline.plan import FleetPlan, load_plan
from nixify.pipeline.report import GATES, HostReport, HostStatus, RunReport, utc_now
from nixify.progress import Progress
from nixify.release.git import list_tags

Say = Callable[[str, str], None]
EndRun = Callable[["Run", Any], None]


def say(host: str, message: str) -> None:
    print(f"[{host}] {message}", file=sys.stderr, flush=True)


class ConnectWatch(BaseStateCallback):
    """A run's view of pyinfra's connect phase: hosts that never answered, and the
    moment none of the selected hosts did (pyinfra then runs no operation, so the
    run must end from here)."""

    unreachable_reason = "unreachable at connect"

    def __init__(self) -> None:
        self._connected: set[str] = set()
        self._unreachable: dict[str, str] = {}

    def host_connect(self, state: Any, host: Any) -> None:  # type: ignore[override]
        self._connected.add(host.name)

    def host_connect_error(  # type: ignore[override]
        self, state: Any, host: Any, error: Any
    ) -> None:
        self._unreachable[host.name] = f"{self.unreachable_reason}: {error}"
        selected = [h for h in state.inventory if state.is_host_in_limit(h)]
        if not self._connected and all(h.name in self._unreachable for h in selected):
            self.no_host_answered(state)

    def no_host_answered(self, state: Any) -> None:
        raise NotImplementedError


def register_on_state(state: Any, handler: BaseStateCallback) -> None:
    """Register ``handler`` on pyinfra's ``state``. From an inventory file the state
    is not initialised yet (``init`` resets its handlers): then the handler is
    registered as soon as ``init`` returns, before any connection."""
    if hasattr(state, "callback_handlers"):
        state.add_callback_handler(handler)
        return
    init = state.init

    def init_then_register(*args: Any, **kwargs: Any) -> Any:
        result = init(*args, **kwargs)
        state.add_callback_handler(handler)
        return result

    state.init = init_then_register


class Run(ConnectWatch):
    """Everything a run's gates share, created once per pyinfra process."""

    def __init__(self, options: RunOptions, repo: Path, on_end: EndRun) -> None:
        super().__init__()
        self.options = options
        self.on_end = on_end
        self.kind = options.kind
        self.mode = options.mode
        self.repo = repo
        self.fleet_dir = options.fleet_dir or repo / "fleet"
        self.reports_dir = options.reports_dir or repo / "reports"
        # a plan reports drift and goes on to gate 3 (`nixify plan` judges the whole fleet)
        self.policy = DriftPolicy(expected=options.expect,
                                  accept=options.accept_drift or options.mode is Mode.PLAN)
        # a saved plan (--data plan=FILE): gate 4 activates only the planned closures
        self.planned: FleetPlan | None = load_plan(options.plan) if options.plan else None
        self.keep_pins = options.keep_pins
        commit, dirty = head_state(repo)
        now = utc_now()
        operator = socket.gethostname()
        self.lock = LockHolder(
            operator=operator,
            machine_id=machine_id(),
            user=getpass.getuser(),
            pid=os.getpid(),
            pid_start=process_start(os.getpid()),
            since=now.isoformat(),
            token=_secrets.token_hex(8),
        )
        self.report = RunReport(
            kind=self.kind.value,
            mode=self.mode.value,
            started=now.isoformat(),
            commit=commit,
            dirty=dirty,
            operator=f"{self.lock.user}@{operator}",
        )
        self.locked_hosts: dict[str, Any] = {}
        self.records: dict[str, list[KnownGoodRecord]] = {}  # read at preflight
        self.activations: dict[str, str] = {}  # host -> its gate 4 job on the host
        # host -> the pin its confirmation asked for, and the pins it retires
        self.pins: dict[str, tuple[KnownGoodRecord, list[str]]] = {}
        self.confirm_timeout = options.confirm_timeout or DEFAULT_CONFIRM_TIMEOUT
        self.activation_timeout = 600.0
        self._live_tags: frozenset[str] | None = None
        self._tags_read = False
        self.builds: Any = None  # the run's BuildCoordinator, made by gate 1
        self.ended = False
        self._end_lock = threading.Lock()
        self._unreachable: dict[str, str] = {}
        # per-gate progress on a terminal, plain lines elsewhere (stderr, as the gates')
        self.progress = Progress(
            Console(stderr=True, width=None if sys.stderr.isatty() else 100)
        )
        self._progress_started = False
        self._connected: set[str] = set()

    def __repr__(self) -> str:
        return f"Run({self.kind.value}, mode={self.mode.value})"

    # -- hosts ------------------------------------------------------------------------

    def host_report(self, host: Any) -> HostReport:
        rep = self.report.hosts.get(host.name)
        if rep is None:
            rep = HostReport(host=host.name, role=str(host.data.get("role")), mode=self.mode)
            self.report.hosts[host.name] = rep
        return rep

    def active(self, host: Any) -> bool:
        """The host is still on its way through the gates."""
        rep = self.report.hosts.get(host.name)
        return rep is None or rep.status is HostStatus.PENDING

    def say(self, host: str, message: str) -> None:
        say(host, message)

    def start_progress(self, state: Any) -> None:
        """Once, at the first gate: every selected host, by role."""
        with self._end_lock:
            if self._progress_started:
                return
            self._progress_started = True
        hosts = {h.name: str(h.data.get("role") or "") for h in state.inventory
                 if state.is_host_in_limit(h)}
        self.progress.start(hosts, list(GATES))

    def live_tags(self) -> frozenset[str] | None:
        """The release tags the repository holds (None when git cannot say)."""
        with self._end_lock:
            if not self._tags_read:
                self._tags_read = True
                try:
                    self._live_tags = frozenset(t.name for t in list_tags(self.repo))
                except NixifyError:
                    self._live_tags = None
            return self._live_tags

    def no_host_answered(self, state: Any) -> None:
        self.on_end(self, state)

    # -- the end ----------------------------------------------------------------------

    def claim_end(self) -> bool:
        """True exactly once: for whoever ends the run."""
        with self._end_lock:
            if self.ended:
                return False
            self.ended = True
            return True

    def account_for_every_host(self, state: Any) -> None:
        """Every selected host gets its final state: one that never answered is
        ``unreachable``, one that stopped between gates is ``failed`` with why."""
        if state is not None:
            for host in state.inventory:
                if not state.is_host_in_limit(host) or host.name in self.report.hosts:
                    continue
                why = self._unreachable.get(host.name)
                if why is None and not host.connected:
                    why = "unreachable at connect: did not answer over SSH"
                rep = self.host_report(host)
                if why:
                    rep.fail(HostStatus.UNREACHABLE, why)
                else:
                    rep.fail(HostStatus.FAILED, "stopped before its first gate (see above)")
        for rep in self.report.hosts.values():
            if rep.status is HostStatus.PENDING:
                rep.fail(HostStatus.FAILED, rep.reason or _stopped_after(rep))


def _stopped_after(rep: HostReport) -> str:
    """Why a host that no gate failed still did not finish."""
    passed = [g for g, r in rep.gates.items() if r.result == "passed"]
    if not passed:
        return "stopped before its first gate (see the output above)"
    return f"stopped after gate {passed[-1]} (see the output above)"


def run_of(state: Any) -> Run | None:
    """The run registered on pyinfra's ``state``, if any."""
    for handler in getattr(state, "callback_handlers", ()):
        if isinstance(handler, Run):
            return handler
    return None
