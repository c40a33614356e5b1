"""One deploy (or rollback) run: its settings, its report, and the end of it."""

from __future__ import annotations

import atexit
import getpass
import os
import secrets as _secrets
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixify.diff.drift import DriftPolicy
from nixify.errors import ConfigError
from nixify.pipeline.lock import LockHolder, machine_id, process_start
from nixify.pipeline.pins import DEFAULT_KEEP
from nixify.pipeline.report import HostReport, RunReport, utc_now

MODES = ("dry", "test", "switch", "boot")


def git_state(repo: Path) -> tuple[str | None, bool | None]:
    """The commit the run deploys from, and whether the work tree was dirty."""
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode != 0:
        return None, None
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True
    )
    return head.stdout.strip(), bool(status.stdout.strip())


@dataclass
class Run:
    """Everything a run's operations share. Created once per pyinfra process."""

    kind: str
    mode: str
    repo: Path
    fleet_dir: Path
    reports_dir: Path
    policy: DriftPolicy
    keep_pins: int
    report: RunReport
    lock: LockHolder
    executed: bool = False
    locked_hosts: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def host_report(self, host: Any) -> HostReport:
        rep = self.report.hosts.get(host.name)
        if rep is None:
            rep = HostReport(host=host.name, role=str(host.data.get("role")), mode=self.mode)
            self.report.hosts[host.name] = rep
        return rep

    def say(self, host: str, message: str) -> None:
        print(f"[{host}] {message}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        """Release what is still locked, print the summary and write the report."""
        from operations.build import close_masters
        from operations.lock import release_lock

        for host in list(self.locked_hosts.values()):
            release_lock(self, host)
        close_masters()
        if not self.executed:
            return
        self.report.finished = utc_now().isoformat()
        for rep in self.report.hosts.values():
            if rep.status == "pending":
                rep.status = "failed"
                rep.reason = rep.reason or _stopped_after(rep, self.kind)
        path = self.report.write(self.reports_dir)
        print("\n" + self.report.summary_table(), file=sys.stderr)
        print(f"report: {path}", file=sys.stderr, flush=True)
        from operations.release import publish_releases

        publish_releases(self, path)


def _stopped_after(rep: HostReport, kind: str) -> str:
    """Why a host that no gate failed still did not finish (an operation between gates)."""
    passed = [g for g, r in rep.gates.items() if r.result == "passed"]
    if not passed:
        return "stopped before its first gate (see the output above)"
    last = passed[-1]
    if last == "switch-test" and kind == "deploy":
        return "secrets install failed after gate 4 (see the output above); not marked"
    return f"stopped after gate {last} (see the output above)"


_RUN: Run | None = None


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def start_run(kind: str, data: Any, repo: Path) -> Run:
    """The run of this process (created on first call, from the hosts' --data)."""
    global _RUN
    if _RUN is not None:
        return _RUN
    mode = str(data.get("mode") or "switch")
    if mode not in MODES:
        raise ConfigError(f"--data mode={mode}: mode must be one of {', '.join(MODES)}")
    expect = data.get("expect") or ""
    expected = frozenset(x.strip() for x in str(expect).split(",") if x.strip())
    keep = int(data.get("keep_pins") or DEFAULT_KEEP)
    if keep < 1:
        raise ConfigError(f"--data keep_pins={keep}: at least one pin is always kept")
    commit, dirty = git_state(repo)
    now = utc_now()
    operator = socket.gethostname()
    lock = LockHolder(
        operator=operator,
        machine_id=machine_id(),
        user=getpass.getuser(),
        pid=os.getpid(),
        pid_start=process_start(os.getpid()),
        since=now.isoformat(),
        token=_secrets.token_hex(8),
    )
    fleet_dir = Path(str(data.get("fleet_dir") or repo / "fleet"))
    reports_dir = Path(str(data.get("reports_dir") or repo / "reports"))
    _RUN = Run(
        kind=kind,
        mode=mode,
        repo=repo,
        fleet_dir=fleet_dir,
        reports_dir=reports_dir,
        policy=DriftPolicy(expected=expected, accept=_flag(data.get("accept_drift"))),
        keep_pins=keep,
        report=RunReport(
            kind=kind,
            mode=mode,
            started=now.isoformat(),
            commit=commit,
            dirty=dirty,
            operator=f"{lock.user}@{operator}",
        ),
        lock=lock,
    )
    atexit.register(_RUN.finish)
    return _RUN


def current_run() -> Run:
    if _RUN is None:
        raise RuntimeError("no deploy run started")
    return _RUN
