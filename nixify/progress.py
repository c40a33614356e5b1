"""Terminal progress for a deploy run: live per-gate counts on a terminal, plain lines
elsewhere, and a summary table at the end that fits 100 columns.

The run calls, in order::

    progress = Progress()
    progress.start({"nas-1": "nas", ...}, ["build", "diff", ...])
    progress.gate_started("nas-1", "build")
    progress.gate_done("nas-1", "build", "passed")     # passed | failed | skipped
    progress.wave("activation", remaining=3)
    progress.finish(report)                             # a RunReport

On a terminal (and without ``NO_COLOR``) a live table shows, per gate, how many hosts
are done, running, failed and still to come. Otherwise every finished gate and every
wave is one plain line, so a log or CI output reads top to bottom. The final summary
groups hosts by state, lists every host that did not pass with its reason, and lists
hosts one per row only when there are few of them (``HOST_ROWS_MAX``).

Calls may come from several threads or greenlets: every method takes one lock.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import IO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from nixify.pipeline.report import GATES, RunReport

WIDTH = 100
HOST_ROWS_MAX = 30  # above this, successful hosts are counted, not listed
_RESULT_STYLE = {"passed": "green", "failed": "bold red", "skipped": "yellow"}
_STATE_STYLE = {
    "deployed": "green",
    "dry-run": "green",
    "failed": "bold red",
    "rolled-back": "bold red",
    "unreachable": "bold red",
    "skipped": "yellow",
    "pending": "dim",
}
_MARK = {"passed": "ok", "failed": "FAIL", "skipped": "-"}
# Column headers of the per-host table, short so that it fits 100 columns.
_SHORT = {"build": "build", "diff": "diff", "dry-activate": "dry", "switch-test": "test",
          "known-good": "pin"}


def plain_wanted(console: Console, environ: dict[str, str] | None = None) -> bool:
    """Plain lines instead of a live display: not a terminal, or ``NO_COLOR`` set
    (to anything but the empty string, as no-color.org says)."""
    env = os.environ if environ is None else environ
    return bool(env.get("NO_COLOR")) or not console.is_terminal


@dataclass
class _GateCount:
    running: set[str] = field(default_factory=set)
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def done(self) -> int:
        return self.passed + self.failed + self.skipped


class Progress:
    """Per-gate progress of one run, and its final summary."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        plain: bool | None = None,
        file: IO[str] | None = None,
    ) -> None:
        self.console = console or Console(file=file, width=None)
        self.plain = plain_wanted(self.console) if plain is None else plain
        self.hosts: dict[str, str] = {}
        self.gates: list[str] = list(GATES)
        self.counts: dict[str, _GateCount] = {}
        self.failed_hosts: dict[str, str] = {}  # host -> gate it failed at
        self.wave_line = ""
        self._live: Live | None = None
        self._lock = threading.RLock()

    # -- the run's calls -------------------------------------------------------------

    def start(self, hosts: dict[str, str], gates: list[str]) -> None:
        with self._lock:
            self.hosts = dict(hosts)
            self.gates = list(gates)
            self.counts = {g: _GateCount() for g in self.gates}
            self.failed_hosts = {}
            roles = sorted(set(hosts.values()))
            if self.plain:
                self._line(f"deploy: {len(hosts)} hosts in {len(roles)} roles, "
                           f"{len(self.gates)} gates")
                return
            self._live = Live(
                self._table(), console=self.console, refresh_per_second=8, transient=True
            )
            self._live.start()

    def gate_started(self, host: str, gate: str) -> None:
        with self._lock:
            self._count(gate).running.add(host)
            self._refresh()

    def gate_done(self, host: str, gate: str, result: str) -> None:
        with self._lock:
            c = self._count(gate)
            c.running.discard(host)
            if result == "passed":
                c.passed += 1
            elif result == "failed":
                c.failed += 1
                self.failed_hosts.setdefault(host, gate)
            else:
                c.skipped += 1
            if self.plain:
                total = len(self.hosts) or c.done
                role = self.hosts.get(host, "?")
                self._line(f"[{c.done:>{len(str(total))}}/{total}] {gate:<12} {host} "
                           f"({role}): {result}")
            self._refresh()

    def wave(self, name: str, remaining: int) -> None:
        with self._lock:
            self.wave_line = f"wave {name}: {remaining} host(s) remaining"
            if self.plain:
                self._line(self.wave_line)
            self._refresh()

    def finish(self, report: RunReport) -> None:
        with self._lock:
            self._stop()
            self.console.print(summary(report), width=min(self.console.width, WIDTH))

    # -- internals -------------------------------------------------------------------

    def _count(self, gate: str) -> _GateCount:
        if gate not in self.counts:
            self.counts[gate] = _GateCount()
            if gate not in self.gates:
                self.gates.append(gate)
        return self.counts[gate]

    def _line(self, text: str) -> None:
        self.console.print(Text(text), highlight=False, soft_wrap=True)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._table())

    def _stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _table(self) -> RenderableType:
        total = len(self.hosts)
        t = Table(box=box.SIMPLE, title=f"deploying {total} hosts", title_justify="left")
        t.add_column("gate")
        t.add_column("done", justify="right")
        t.add_column("running", justify="right")
        t.add_column("failed", justify="right")
        t.add_column("to come", justify="right")
        t.add_column("now", overflow="ellipsis", max_width=48, no_wrap=True)
        for g in self.gates:
            c = self.counts.get(g) or _GateCount()
            waiting = max(0, total - c.done - len(c.running))
            now = ", ".join(sorted(c.running)[:4]) + (" …" if len(c.running) > 4 else "")
            t.add_row(
                g,
                str(c.done),
                str(len(c.running)),
                Text(str(c.failed), style="bold red" if c.failed else ""),
                str(waiting),
                now,
            )
        parts: list[RenderableType] = [t]
        if self.wave_line:
            parts.append(Text(self.wave_line, style="dim"))
        return Group(*parts)


def _failed_gate(report: RunReport, host: str) -> str:
    h = report.hosts[host]
    for g in GATES:
        gr = h.gates.get(g)
        if gr is not None and gr.result == "failed":
            return g
    return "-"


def summary(report: RunReport, width: int = WIDTH) -> Group:
    """The end-of-run summary: counts by state, hosts that did not pass with their
    reasons, and (for a small run) one row per host."""
    names = sorted(report.hosts)
    parts: list[RenderableType] = []
    counts = Table(box=box.SIMPLE_HEAD, title="hosts by state", title_justify="left")
    counts.add_column("state")
    counts.add_column("hosts", justify="right")
    counts.add_column("roles", overflow="fold", max_width=width - 30)
    by_state: dict[str, list[str]] = {}
    for n in names:
        by_state.setdefault(report.hosts[n].status.value, []).append(n)
    for state, hosts in sorted(by_state.items()):
        roles = sorted({report.hosts[n].role for n in hosts})
        counts.add_row(Text(state, style=_STATE_STYLE.get(state, "")), str(len(hosts)),
                       ", ".join(roles))
    parts.append(counts)

    bad = [n for n in names if not report.hosts[n].status.ok]
    if bad:
        t = Table(box=box.SIMPLE_HEAD, title="did not pass", title_justify="left")
        t.add_column("host", no_wrap=True)
        t.add_column("role", no_wrap=True)
        t.add_column("state", no_wrap=True)
        t.add_column("gate", no_wrap=True)
        t.add_column("reason", overflow="fold", ratio=1)
        for n in bad:
            h = report.hosts[n]
            t.add_row(n, h.role, Text(h.status.value, style=_STATE_STYLE.get(h.status.value, "")),
                      _failed_gate(report, n), h.reason or "-")
        parts.append(t)

    if len(names) <= HOST_ROWS_MAX:
        t = Table(box=box.SIMPLE_HEAD, title="per host", title_justify="left")
        t.add_column("host", no_wrap=True)
        t.add_column("role", no_wrap=True)
        for g in GATES:
            t.add_column(_SHORT.get(g, g), no_wrap=True)
        t.add_column("state", no_wrap=True)
        for n in names:
            h = report.hosts[n]
            cells: list[Text] = []
            for g in GATES:
                gr = h.gates.get(g)
                res = gr.result.value if gr else ""
                cells.append(Text(_MARK.get(res, "."), style=_RESULT_STYLE.get(res, "dim")))
            t.add_row(n, h.role, *cells,
                      Text(h.status.value, style=_STATE_STYLE.get(h.status.value, "")))
        parts.append(t)
    else:
        ok = len(names) - len(bad)
        parts.append(Text(f"{ok} other host(s) passed every gate they ran (not listed)"))

    done = sum(1 for n in names if report.hosts[n].status.ok)
    verdict = "ok" if report.ok else "NOT OK"
    parts.append(Text(
        f"{verdict}: {done}/{len(names)} hosts passed every gate they ran",
        style="bold green" if report.ok else "bold red",
    ))
    return Group(*parts)


__all__ = ["HOST_ROWS_MAX", "WIDTH", "Progress", "plain_wanted", "summary"]
