"""What every bench prints beside its figures: the machine, its load, a table."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _mem_total() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return "?"


def machine() -> str:
    """One line: when, where, how many CPUs, how much memory, the load now."""
    return (
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}  {platform.node()}  nproc {os.cpu_count()}  "
        f"mem {_mem_total()}  python {platform.python_version()}  load {loadavg()}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table, first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        out = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in
               enumerate(zip(cells, widths, strict=True))]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
