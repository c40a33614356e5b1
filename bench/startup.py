"""Bench: `nixify` start-up against a bare `python -c pass` of the same interpreter.

    .venv/bin/python bench/startup.py [--runs 20]

Each case runs --runs times as a fresh process; the best wall and the best CPU
(user + system, from wait4) count, and the ratio is to the bare interpreter's
best. Then, per case, what it imported (one extra run under `-X importtime`):
how many nixify modules, and which heavy libraries.

Target (issue 14): `nixify --help` <= 4x the bare interpreter.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.benchkit import loadavg, machine, table  # noqa: E402

BIN = ROOT / ".venv" / "bin"
PYTHON = str(BIN / "python")
NIXIFY = str(BIN / "nixify")
HEAVY = ("pydantic", "yaml", "pyinfra", "cryptography", "rich", "pyrage", "sqlite3", "jinja2",
         "gevent", "paramiko")
CASES: list[tuple[str, list[str]]] = [
    ("python -c pass", [PYTHON, "-c", "pass"]),
    ("nixify --help", [NIXIFY, "--help"]),
    ("nixify diff --help", [NIXIFY, "diff", "--help"]),
    ("nixify status --help", [NIXIFY, "status", "--help"]),
    ("nixify secrets --help", [NIXIFY, "secrets", "--help"]),
]


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) of one run, output discarded."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv}: exit {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime


def imports(argv: list[str]) -> tuple[int, list[str]]:
    """How many nixify modules and which heavy libraries ``argv`` imports."""
    if argv[0] == NIXIFY:  # the console script is `from nixify.cli import main`
        argv = [PYTHON, "-X", "importtime", "-m", "nixify.cli", *argv[1:]]
    else:
        argv = [argv[0], "-X", "importtime", *argv[1:]]
    err = subprocess.run(argv, capture_output=True, text=True).stderr
    names = [
        ln.rsplit("|", 1)[-1].strip() for ln in err.splitlines() if ln.startswith("import time:")
    ]
    ours = sum(1 for n in names if n == "nixify" or n.startswith("nixify."))
    return ours, [h for h in HEAVY if h in names]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    print(machine())
    results: dict[str, tuple[list[float], list[float]]] = {}
    for _ in range(args.runs):  # interleaved: a burst of load hits every case alike
        for name, argv in CASES:
            wall, cpu = run_once(argv)
            walls, cpus = results.setdefault(name, ([], []))
            walls.append(wall)
            cpus.append(cpu)
    base_wall = min(results[CASES[0][0]][0])
    base_cpu = min(results[CASES[0][0]][1])
    rows = []
    for name, argv in CASES:
        walls, cpus = results[name]
        ours, heavy = imports(argv)
        rows.append([
            name,
            f"{min(walls) * 1000:.0f}",
            f"{statistics.median(walls) * 1000:.0f}",
            f"{min(cpus) * 1000:.0f}",
            f"{min(walls) / base_wall:.2f}x",
            f"{min(cpus) / max(base_cpu, 0.001):.2f}x",
            str(ours),
            ", ".join(heavy) or "-",
        ])
    print(f"\nstart-up, best of {args.runs} runs each (interleaved); load after: {loadavg()}")
    print(table(["command", "wall ms", "median ms", "cpu ms", "wall ratio", "cpu ratio",
                 "nixify modules", "heavy imports"], rows))
    help_ratio = min(results["nixify --help"][0]) / base_wall
    print(f"\ntarget: nixify --help <= 4x python -c pass (wall): {help_ratio:.2f}x "
          f"{'met' if help_ratio <= 4 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
