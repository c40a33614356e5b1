"""``nixify report``: the fleet as one self-contained HTML page.

    nixify report [--out FILE] [--reports DIR] [--offline] [--inventory FILE]
                  [--timeout SECONDS]

Reads the run reports in ``reports/`` and, unless ``--offline``, asks the fleet
(``nixify status --json``) and the secrets tree (``nixify secrets audit --json``),
each with a timeout; what does not answer is named on the page. Exit 0 when the page
was written (whatever the fleet's state), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nixify import paths
from nixify.report.collect import DEFAULT_TIMEOUT, collect
from nixify.report.page import render_page
from nixify.util import atomic_write


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report",
        help="the fleet as one self-contained HTML page (runs, status, diff, secrets)",
        description=(
            "Write one HTML page (inline CSS and JavaScript, nothing loaded from the "
            "network): hosts by role with running vs known-good, drift and reachability; "
            "the last deploy as a timeline per host and gate; the fleet-wide diff by "
            "cause; release tags per target; the secrets blast-radius matrix."
        ),
    )
    p.add_argument("--out", type=Path, default=None,
                   help="the page to write (default: reports/fleet-report.html)")
    p.add_argument("--reports", type=Path, default=None,
                   help="the run reports directory (default: reports/ of the project)")
    p.add_argument("--offline", action="store_true",
                   help="only the run reports and git: do not ask the fleet or the secrets")
    p.add_argument("--inventory", "-i", default=None,
                   help="inventory for the status probe (default: as `nixify status`)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds for each probe (default {DEFAULT_TIMEOUT:.0f})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = paths.repo_root()
    reports = args.reports or root / "reports"
    out: Path = args.out or reports / "fleet-report.html"
    data = collect(root, reports, live=not args.offline, inventory=args.inventory,
                   timeout=args.timeout)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, render_page(data), sync_dir=False)
    hosts = len({*(data.latest.hosts if data.latest else {})})
    print(f"nixify report: {out} ({hosts} hosts in the last run; "
          f"{len(data.unavailable)} source(s) not available)")
    return 0
