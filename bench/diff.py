"""Bench: `nixify diff` against `nix store diff-closures` on 10,000-path closures.

Builds two synthetic closures offline (builtins.toFile, bench/diff_closure.nix:
100 groups of 99 leaves, the leaves of 5 groups changed: half version bumps,
half rebuilds at the same version, about 5% of the paths), then times, in the
same run and on the same store:

  baseline   nix store diff-closures OLD NEW
  nixify     nixify diff OLD NEW               (the console script)
  module     python -m nixify.diff OLD NEW     (without the command dispatcher)
  no-db      nixify diff --no-db OLD NEW       (the `nix path-info` path used for hosts)
  startup    nixify --help                     (the dispatcher alone: its static command table)
  library    query both closures + diff_closures, in process

and checks that the version findings are identical (and the whole
diff-closures report, line for line). Prints medians and ratios to the
baseline; exits 1 if the findings differ.

With ``--rca N`` it also builds two derivation closures (bench/diff_rca.nix:
N packages over one base library whose environment changed, plus N untouched
ones; about N * 0.05 s to build) and times the RCA, with the derivations read

  baseline   eagerly: nix show-derivation --recursive of both roots, then explain
  lazy       LazyDerivations: only what the walk reaches, one batch per level

checking that both name the same single cause with the same consequences.

    .venv/bin/python bench/diff.py [--groups 100 --per-group 99 --changed 5 --runs 7 --rca 0]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nixify.diff import (
    LazyDerivations,
    LocalStoreDatabase,
    derivations_query_command,
    diff_closures,
    explain,
    query_closure,
    query_derivations,
)
from nixify.nix import LocalRunner, nix_environ

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LINE = re.compile(r"^(?P<name>[^:]*): (?P<arrow>\S.*? → .*?)(?:, [+-]\d+\.\d KiB)?$")


def make_closure(variant: str, groups: int, per_group: int, changed: int) -> str:
    proc = subprocess.run(
        [
            "nix-instantiate", "--eval", "--read-write-mode", str(HERE / "diff_closure.nix"),
            "--argstr", "variant", variant,
            "--arg", "groups", str(groups),
            "--arg", "perGroup", str(per_group),
            "--arg", "changedGroups", str(changed),
        ],
        capture_output=True, text=True, env=nix_environ(), check=True,
    )  # fmt: skip
    return proc.stdout.strip().strip('"')


def interleaved(
    cases: list[tuple[str, Callable[[], object]]], runs: int
) -> dict[str, tuple[float, object]]:
    """Median time and last result of each case, the cases taking turns run by run
    (so a burst of load on this shared machine hits all of them alike)."""
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    last: dict[str, object] = {}
    for _ in range(runs):
        for name, fn in cases:
            t = time.perf_counter()
            last[name] = fn()
            times[name].append(time.perf_counter() - t)
    return {name: (statistics.median(times[name]), last[name]) for name, _ in cases}


def timed(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=nix_environ(), check=True)
    return proc.stdout


def findings(text: str) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    def versions(part: str) -> tuple[str, ...]:
        return () if part == "∅" else tuple(sorted("" if v == "ε" else v for v in part.split(", ")))

    out = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            old, _, new = m.group("arrow").partition(" → ")
            out[m.group("name")] = (versions(old), versions(new))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--per-group", type=int, default=99)
    ap.add_argument("--changed", type=int, default=5)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rca", type=int, default=0, metavar="N", help="also bench the RCA")
    args = ap.parse_args()
    ok = version_bench(args)
    if args.rca:
        ok = rca_bench(args.rca, args.runs) and ok
    return 0 if ok else 1


def rca_bench(n: int, runs: int) -> bool:
    t = time.perf_counter()
    roots = []
    for variant in ("1", "2"):
        proc = subprocess.run(
            ["nix-build", str(HERE / "diff_rca.nix"), "--no-out-link",
             "--arg", "n", str(n), "--arg", "unchanged", str(n), "--argstr", "variant", variant],
            capture_output=True, text=True, env=nix_environ(), check=True,
        )  # fmt: skip
        roots.append(proc.stdout.strip())
    print(f"\nRCA: closures built in {time.perf_counter() - t:.1f} s")
    runner = LocalRunner()
    old, new = (query_closure(runner, r) for r in roots)
    diff = diff_closures(old, new)
    drvs = [c.paths[c.root].deriver or "" for c in (old, new)]

    def eager() -> object:
        return explain(diff, query_derivations(runner, drvs))

    lazy_sources: list[LazyDerivations] = []

    def lazy() -> object:
        lazy_sources.append(LazyDerivations(runner))
        return explain(diff, lazy_sources[-1])

    timings = interleaved([("eager", eager), ("lazy", lazy)], runs)
    (e_time, e_rep), (l_time, l_rep) = timings["eager"], timings["lazy"]
    all_drvs = len(query_derivations(runner, drvs).drvs)
    eager_bytes = len(runner.run(derivations_query_command(drvs)).stdout)
    src = lazy_sources[-1]

    def shape(rep: object) -> list[tuple[str, int, int]]:
        return [(c.name, len(c.consequences), len(c.removes)) for c in rep.causes]  # type: ignore[attr-defined]

    same = shape(e_rep) == shape(l_rep) and len(shape(l_rep)) == 1
    print(f"  paths {len(new.paths)}, changed {len(diff.added_paths)}; derivations {all_drvs}")
    print(
        f"  {'eager show-derivation -r':<26} {e_time * 1000:8.1f} ms   1.00x   (baseline;"
        f" {all_drvs} .drv, {eager_bytes / 1024:.0f} KiB read)"
    )
    print(
        f"  {'LazyDerivations':<26} {l_time * 1000:8.1f} ms   {l_time / e_time:5.2f}x"
        f"   ({src.fetched} .drv, {src.bytes_read / 1024:.0f} KiB read,"
        f" {src.round_trips} round trips)"
    )
    print(f"  causes: {shape(l_rep)}; eager and lazy agree: {same}")
    return same


def version_bench(args: argparse.Namespace) -> bool:
    t = time.perf_counter()
    old = make_closure("old", args.groups, args.per_group, args.changed)
    new = make_closure("new", args.groups, args.per_group, args.changed)
    print(f"closures built offline in {time.perf_counter() - t:.1f} s: {old} {new}")

    def library() -> object:
        db = LocalStoreDatabase()
        try:
            return diff_closures(db.query_closure(old), db.query_closure(new))
        finally:
            db.close()

    lib_time, diff = timed(library, args.runs)
    assert hasattr(diff, "render_nix_style")
    n_old, n_new = len(diff.old.paths), len(diff.new.paths)  # type: ignore[attr-defined]
    moved = len(diff.added_paths)  # type: ignore[attr-defined]
    print(f"paths: {n_old} old, {n_new} new, {moved} changed ({100 * moved / n_new:.1f}%)")

    nixify = [str(BIN / "nixify"), "diff", old, new]
    module = [sys.executable, "-m", "nixify.diff", old, new]
    cases: list[tuple[str, Callable[[], object]]] = [
        ("nix store diff-closures", lambda: run(["nix", "store", "diff-closures", old, new])),
        ("nixify diff", lambda: run(nixify)),
        ("python -m nixify.diff", lambda: run(module)),
        ("nixify diff --no-db", lambda: run([*nixify, "--no-db"])),
        ("nixify --help (startup)", lambda: run([str(BIN / "nixify"), "--help"])),
    ]
    results = interleaved(cases, args.runs)
    results["library (in process)"] = (lib_time, diff)
    base_name = cases[0][0]
    base = results[base_name][0]
    print(f"\nmedian of {args.runs} runs; baseline = {base_name}")
    for name, (secs, _) in results.items():
        print(f"  {name:<26} {secs * 1000:8.1f} ms   {secs / base:5.2f}x")

    nix_text = ANSI.sub("", str(results[base_name][1]))
    ours = diff.render_nix_style()  # type: ignore[attr-defined]
    same_findings = findings(nix_text) == diff.version_findings()  # type: ignore[attr-defined]
    same_text = ours == nix_text
    via_cli = findings(run([*nixify, "--nix-style"])) == findings(nix_text)
    print(
        f"\nversion findings: {len(findings(nix_text))} names; identical: {same_findings}; "
        f"CLI identical: {via_cli}; whole report identical: {same_text}"
    )
    return same_findings and same_text and via_cli


if __name__ == "__main__":
    sys.exit(main())
