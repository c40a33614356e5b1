"""Terminal progress (nixify.progress): live on a terminal, plain lines otherwise, and a
final summary that fits 100 columns, groups by state and names every failure."""

from __future__ import annotations

import io

from reportkit import FAILED_HOST, FAILED_REASON, big_fleet, make_report
from rich.console import Console

from nixify.pipeline.report import GATES
from nixify.progress import HOST_ROWS_MAX, Progress, plain_wanted


def _drive(p: Progress, fleet: tuple[tuple[str, str], ...], failed: str | None) -> None:
    p.start(dict(fleet), list(GATES))
    p.wave("build", len(fleet))
    for g in GATES:
        for name, _role in fleet:
            p.gate_started(name, g)
        for name, _role in fleet:
            if name == failed and g == "switch-test":
                p.gate_done(name, g, "failed")
            elif name == failed and g == "known-good":
                p.gate_done(name, g, "skipped")
            else:
                p.gate_done(name, g, "passed")


def test_tty_console_records_live_counts_and_summary_within_100_columns() -> None:
    console = Console(record=True, width=100, force_terminal=True, file=io.StringIO(),
                      color_system="truecolor")
    p = Progress(console)
    assert not p.plain
    report = make_report()
    fleet = tuple((n, h.role) for n, h in report.hosts.items())
    _drive(p, fleet, FAILED_HOST)
    assert p.counts["switch-test"].failed == 1
    assert p.counts["build"].passed == len(fleet)
    assert not any(c.running for c in p.counts.values())
    p.finish(report)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert "rolled-back" in text and "deployed" in text
    assert FAILED_HOST in text
    # the reason is there in full, folded over lines if it must be
    assert "samba-smbd.service" in "".join(line.strip() for line in lines)
    # 15 hosts: one row per host
    for name, _role in fleet:
        assert name in text
    assert "NOT OK: 14/15 hosts passed" in text
    assert "\x1b[" in console.file.getvalue()  # type: ignore[attr-defined]  # it was live


def test_not_a_tty_prints_plain_lines() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100)
    assert not console.is_terminal
    p = Progress(console)
    assert p.plain
    fleet = (("nas-1", "nas"), ("laptop-1", "laptop"))
    _drive(p, fleet, "nas-1")
    p.finish(make_report(fleet, failed="nas-1"))
    text = out.getvalue()
    assert "\x1b[" not in text
    assert "[1/2] build        nas-1 (nas): passed" in text
    assert "switch-test  nas-1 (nas): failed" in text
    assert "wave build: 2 host(s) remaining" in text
    assert FAILED_REASON[:40] in text


def test_no_color_means_plain_even_on_a_terminal() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    assert plain_wanted(console, {"NO_COLOR": "1"})
    assert not plain_wanted(console, {"NO_COLOR": ""})
    assert not plain_wanted(console, {})


def test_a_big_run_lists_failures_not_every_successful_host() -> None:
    fleet = big_fleet(60)
    failed = fleet[7][0]
    console = Console(record=True, width=100, file=io.StringIO())
    p = Progress(console)
    _drive(p, fleet, failed)
    p.finish(make_report(fleet, failed=failed))
    text = console.export_text()
    assert len(fleet) > HOST_ROWS_MAX
    assert max(len(line) for line in text.splitlines()) <= 100
    assert failed in text
    summary = text[text.index("hosts by state"):].replace("\n", " ")
    listed = [n for n, _r in fleet if f" {n} " in f" {summary} "]
    assert listed == [failed], listed
    assert "59 other host(s) passed every gate they ran (not listed)" in text


def test_a_wide_terminal_still_gets_a_100_column_summary() -> None:
    console = Console(record=True, width=200, file=io.StringIO())
    p = Progress(console, plain=True)
    report = make_report()
    p.start({n: h.role for n, h in report.hosts.items()}, list(GATES))
    p.finish(report)
    assert max(len(line) for line in console.export_text().splitlines()) <= 100
