"""Root-cause analysis on real derivations: leaf causes, deduplicated, with consequences."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from diff_fixtures.nixbuild import build

from nixify.diff import diff_closures, query_closure
from nixify.diff.closure import Closure, PathInfo
from nixify.diff.derivations import DerivationSet, query_derivations
from nixify.diff.drift import DriftPolicy
from nixify.diff.rca import RootCauseReport, explain
from nixify.nix import LocalRunner, nix_environ, store_path_name

HELLO = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="  # printf hello
WORLD = "sha256-SG6kYiTRu0+2gPNPfJrZao8k7Ii+c+qOWmxlJg6cuKc="  # printf world
APPS = [f"app{chr(97 + i // 26)}{chr(97 + i % 26)}-1.0" for i in range(30)]


def base(**over: Any) -> list[dict[str, Any]]:
    """30 apps on one library, a service, a source, a fixed-output input, a compiler."""
    lib = over.get("lib", {"name": "lib-1.0", "env": {"PATCHES": "none"}})
    cc = over.get("cc", {"name": "cc-9.0", "buildOnly": True, "payload": "cc 9"})
    svc_env = over.get("svc_env", {"LOGLEVEL": "info"})
    pkgs: list[dict[str, Any]] = [lib, cc]
    pkgs += [{"name": a, "deps": [lib["name"]]} for a in APPS]
    pkgs += [
        {"name": "svc-1.0", "deps": [lib["name"]], "env": svc_env, **over.get("svc_extra", {})},
        {"name": "cfg-1.0", "source": over.get("source", "port = 80\n")},
        {"name": "fetched-1.0", "fixed": over.get("fixed", {"content": "hello", "hash": HELLO})},
        {"name": "compiled-1.0", "buildDeps": ["cc-9.0" if "cc" not in over else cc["name"]]},
    ]
    pkgs += over.get("extra", [])
    return pkgs


VARIANTS: dict[str, list[dict[str, Any]]] = {
    "base": base(),
    "lib-patched": base(lib={"name": "lib-1.0", "env": {"PATCHES": "cve-fix.patch"}}),
    "lib-bumped": base(lib={"name": "lib-1.1", "env": {"PATCHES": "none"}}),
    "svc-env": base(svc_env={"LOGLEVEL": "debug"}),
    "two-causes": base(
        lib={"name": "lib-1.0", "env": {"PATCHES": "cve-fix.patch"}},
        svc_env={"LOGLEVEL": "debug"},
    ),
    "source": base(source="port = 8080\n"),
    "fixed-hash": base(fixed={"content": "world", "hash": WORLD}),
    "fixed-url": base(fixed={"content": "hello", "hash": HELLO, "url": "https://mirror.invalid/x"}),
    "compiler": base(cc={"name": "cc-9.1", "buildOnly": True, "payload": "cc 9.1"}),
    "added": base(extra=[{"name": "newpkg-0.1", "deps": ["lib-1.0"]}]),
    "multi": base(extra=[{"name": "multi-1.0", "outputs": ["out", "bin"], "env": {"X": "1"}}]),
    "multi-changed": base(
        extra=[{"name": "multi-1.0", "outputs": ["out", "bin"], "env": {"X": "2"}}]
    ),
    "svc-script": base(svc_extra={"script": "echo hardened > $out/profile"}),
    "svc-builder": base(svc_env={"LOGLEVEL": "info", "builder": "/usr/bin/sh"}),
    "lib-renamed": base(lib={"name": "libnew-1.0", "env": {"PATCHES": "none"}}),
}


@pytest.fixture(scope="module")
def roots() -> dict[str, str]:
    return {name: build(pkgs) for name, pkgs in VARIANTS.items()}


def rca(roots: dict[str, str], old: str, new: str) -> RootCauseReport:
    runner = LocalRunner()
    a, b = query_closure(runner, roots[old]), query_closure(runner, roots[new])
    drvs = query_derivations(runner, [a.paths[a.root].deriver or "", b.paths[b.root].deriver or ""])
    return explain(diff_closures(a, b), drvs)


def names(paths: set[str]) -> set[str]:
    return {store_path_name(p) for p in paths}


def test_one_leaf_many_dependents_is_one_cause(roots: dict[str, str]) -> None:
    report = rca(roots, "base", "lib-patched")
    assert len(report.causes) == 1 and report.complete
    (cause,) = report.causes
    assert cause.name == "lib-1.0"
    assert [(c.kind, c.field, c.old, c.new) for c in cause.changes] == [
        ("env", "PATCHES", "none", "cve-fix.patch")
    ]
    assert names(cause.consequences) == {*APPS, "lib-1.0", "svc-1.0", "system"}
    assert len(cause.consequences) == 33 == len(report.diff.added_paths)
    # The rebuilds are explained, not listed as noise of their own.
    assert {c.name for c in report.diff.rebuilt} >= {"appaa", "appbd", "svc", "system"}
    text = report.render()
    assert "lib-1.0: 33 new paths" in text and "PATCHES" in text


def test_version_bump_names_the_library(roots: dict[str, str]) -> None:
    report = rca(roots, "base", "lib-bumped")
    (cause,) = report.causes
    assert cause.package == "lib"
    assert ("env", "name", "lib-1.0", "lib-1.1") in [
        (c.kind, c.field, c.old, c.new) for c in cause.changes
    ]
    assert len(cause.consequences) == 33 and len(cause.removes) == 33


def test_renamed_library_is_one_cause(roots: dict[str, str]) -> None:
    report = rca(roots, "base", "lib-renamed")
    assert report.diff.version_findings() == {"lib": (("1.0",), ()), "libnew": ((), ("1.0",))}
    (cause,) = report.causes
    assert cause.name == "libnew-1.0" and cause.old_drv and "-lib-1.0.drv" in cause.old_drv
    assert ("env", "name", "lib-1.0", "libnew-1.0") in [
        (c.kind, c.field, c.old, c.new) for c in cause.changes
    ]
    assert len(cause.consequences) == 33 and report.complete


def test_changed_environment_value_is_named(roots: dict[str, str]) -> None:
    report = rca(roots, "base", "svc-env")
    (cause,) = report.causes
    assert cause.name == "svc-1.0"
    (change,) = cause.changes
    assert (change.kind, change.field, change.old, change.new) == (
        "env",
        "LOGLEVEL",
        "info",
        "debug",
    )
    assert "environment LOGLEVEL: 'info' -> 'debug'" in report.render()
    assert names(cause.consequences) == {"svc-1.0", "system"}


def test_changed_builder_is_named(roots: dict[str, str]) -> None:
    report = rca(roots, "base", "svc-builder")
    (cause,) = report.causes
    assert cause.name == "svc-1.0"
    assert ("builder", "", "/bin/sh", "/usr/bin/sh") in [
        (c.kind, c.field, c.old, c.new) for c in cause.changes
    ]
    assert "builder: '/bin/sh' -> '/usr/bin/sh'" in report.render()


def test_every_output_of_a_changed_derivation(roots: dict[str, str]) -> None:
    report = rca(roots, "multi", "multi-changed")
    (cause,) = report.causes
    assert cause.name == "multi-1.0" and [(c.field, c.old, c.new) for c in cause.changes] == [
        ("X", "1", "2")
    ]
    assert names(cause.consequences) == {"multi-1.0", "multi-1.0-bin", "system"}


def test_changed_builder_argument_is_named(roots: dict[str, str]) -> None:
    report = rca(roots, "base", "svc-script")
    (cause,) = report.causes
    (change,) = cause.changes
    assert (cause.name, change.kind) == ("svc-1.0", "args")
    assert change.new is not None and "echo hardened > $out/profile" in change.new
    assert "echo hardened" in report.render()  # the differing part is what is shown


def test_two_independent_causes(roots: dict[str, str]) -> None:
    report = rca(roots, "base", "two-causes")
    by_name = {c.name: c for c in report.causes}
    assert set(by_name) == {"lib-1.0", "svc-1.0"}
    system = next(p for p in report.diff.added_paths if store_path_name(p) == "system")
    assert {c.name for c in report.causes_of(system)} == {"lib-1.0", "svc-1.0"}
    assert len(by_name["lib-1.0"].consequences) == 33
    assert names(by_name["svc-1.0"].consequences) == {"svc-1.0", "system"}


def test_changed_source(roots: dict[str, str]) -> None:
    report = rca(roots, "base", "source")
    (cause,) = report.causes
    assert cause.name == "cfg-1.0"
    assert [(c.kind, c.field) for c in cause.changes] == [("source", "cfg-1.0-source.txt")]
    # The source file itself is a build input only (its text is copied).
    assert names(cause.consequences) == {"cfg-1.0", "system"}
    assert report.complete


def test_changed_fixed_output_input(roots: dict[str, str]) -> None:
    report = rca(roots, "base", "fixed-hash")
    (cause,) = report.causes
    assert cause.name == "fetched-1.0-src"
    kinds = {(c.kind, c.field) for c in cause.changes}
    assert ("fixed-output", "outputHash") in kinds and ("env", "content") in kinds
    assert names(cause.consequences) == {"fetched-1.0", "system"}


def test_fixed_output_with_same_hash_changes_nothing(roots: dict[str, str]) -> None:
    assert roots["fixed-url"] == roots["base"]
    report = rca(roots, "base", "fixed-url")
    assert report.causes == [] and report.unexplained == []


def test_build_time_only_change_is_the_cause(roots: dict[str, str]) -> None:
    report = rca(roots, "base", "compiler")
    (cause,) = report.causes
    assert cause.name == "cc-9.1"  # not in either closure, still the root cause
    assert names(cause.consequences) == {"compiled-1.0", "system"}
    assert report.diff.version_findings() == {}


def test_added_package_is_attributed(roots: dict[str, str]) -> None:
    report = rca(roots, "base", "added")
    (cause,) = report.causes
    assert cause.name == "system"
    assert [(c.kind, c.field) for c in cause.changes] == [("input-added", "newpkg-0.1")]
    assert names(cause.consequences) == {"newpkg-0.1", "system"}


def test_missing_drv_leaves_paths_unexplained_with_reason(roots: dict[str, str]) -> None:
    runner = LocalRunner()
    doomed = build(base(svc_env={"LOGLEVEL": "trace"}))
    old, new = query_closure(runner, roots["base"]), query_closure(runner, doomed)
    drv = new.paths[new.root].deriver
    assert drv is not None
    # Forget the new root's .drv (as for a closure substituted from a cache):
    # its output first, which keeps it alive, then the .drv.
    for path in (doomed, drv):
        proc = subprocess.run(
            ["nix-store", "--delete", path], capture_output=True, text=True, env=nix_environ()
        )
        assert proc.returncode == 0, proc.stderr
    drvs = query_derivations(runner, [old.paths[old.root].deriver or "", drv])
    assert drv in drvs.missing
    diff = diff_closures(old, new)
    report = explain(diff, drvs)
    assert report.causes == []
    assert {u.path for u in report.unexplained} == diff.added_paths | diff.removed_paths
    assert all(drv in u.reason and "not available" in u.reason for u in report.unexplained)
    # The version diff does not need derivations at all.
    assert {c.name for c in diff.rebuilt} == {"svc", "system"}
    assert "Unexplained (4)" in report.render()


def test_closure_without_derivers() -> None:
    def closure(root: str, deps: list[str]) -> Closure:
        paths = {p: PathInfo(p, 100) for p in [root, *deps]}
        return Closure(root, paths, "cache")

    h = "0" * 31
    old = closure(f"/nix/store/{h}1-system", [f"/nix/store/{h}2-lib-1.0"])
    new = closure(f"/nix/store/{h}3-system", [f"/nix/store/{h}4-lib-1.1"])
    report = explain((old, new), DerivationSet())
    assert len(report.unexplained) == 4
    assert all("no deriver" in u.reason for u in report.unexplained)
    assert report.diff.version_findings() == {"lib": (("1.0",), ("1.1",))}


def test_drift_policy(roots: dict[str, str]) -> None:
    report = rca(roots, "base", "two-causes")
    diff = report.diff
    silent = DriftPolicy().check(diff, report)
    assert silent.ok and silent.unexpected == ()

    only_lib = DriftPolicy(frozenset({"lib"})).check(diff, report)
    assert not only_lib.ok
    assert any("svc-1.0" in u and "LOGLEVEL" in u for u in only_lib.unexpected)
    assert "svc-1.0" in only_lib.message and "lib" in only_lib.message

    both = DriftPolicy(frozenset({"lib", "svc.LOGLEVEL"})).check(diff, report)
    assert both.ok, both.message

    accepted = DriftPolicy(frozenset({"lib"}), accept=True).check(diff, report)
    assert accepted.ok and accepted.unexpected == only_lib.unexpected

    bump = rca(roots, "base", "lib-bumped")
    assert DriftPolicy(frozenset({"lib"})).check(bump.diff, bump).ok
    wrong = DriftPolicy(frozenset({"svc"})).check(bump.diff, bump)
    assert not wrong.ok and "package changed lib" in wrong.unexpected
    # Without RCA only the package names can be judged.
    assert DriftPolicy(frozenset({"lib"})).check(bump.diff).ok
    assert not DriftPolicy(frozenset({"svc"})).check(bump.diff).ok


def test_rca_json(roots: dict[str, str]) -> None:
    js = rca(roots, "base", "svc-env").to_json()
    assert js["counts"] == {"causes": 1, "explained_paths": 4, "unexplained_paths": 0}
    (cause,) = js["causes"]
    assert cause["derivation"] == "svc-1.0"
    assert cause["changes"] == [{"kind": "env", "field": "LOGLEVEL", "old": "info", "new": "debug"}]


def test_gate_from_fact_outputs(roots: dict[str, str]) -> None:
    """What the pipeline does: run the commands (as a pyinfra fact would), parse, judge."""
    from nixify.diff import (
        closure_gate,
        closure_query_command,
        derivations_query_command,
        parse_closure_query,
        parse_derivations,
    )

    def fact(argv: list[str]) -> str:
        return subprocess.run(
            argv, capture_output=True, text=True, check=True, env=nix_environ()
        ).stdout

    running = parse_closure_query(
        fact(closure_query_command(roots["base"])), roots["base"], "nas-1"
    )
    candidate = parse_closure_query(
        fact(closure_query_command(roots["svc-env"])), roots["svc-env"], "builder-1"
    )
    roots_drvs = [running.paths[running.root].deriver, candidate.paths[candidate.root].deriver]
    drvs = parse_derivations(
        fact(derivations_query_command(d for d in roots_drvs if d)), "builder-1"
    )

    report = closure_gate(running, candidate, drvs, DriftPolicy(frozenset({"lib"})))
    assert not report.ok
    assert report.counts()["causes"] == 1 and report.counts()["unexplained"] == 0
    assert "cause svc-1.0: environment LOGLEVEL: 'info' -> 'debug'" in report.verdict.unexpected
    js = report.to_json()
    assert js["drift"]["ok"] is False and js["rca"]["causes"][0]["derivation"] == "svc-1.0"
    assert "Drift: FAIL" in report.render()

    assert closure_gate(running, candidate, drvs, DriftPolicy(frozenset({"svc"}))).ok
    no_rca = closure_gate(running, candidate)  # no derivations, no declaration: report and pass
    assert no_rca.ok and no_rca.rca is None and "reporting only" in no_rca.verdict.message


@pytest.mark.parametrize("variant", ["lib-patched", "svc-env", "compiler", "added", "lib-renamed"])
def test_lazy_derivations_give_the_same_report(roots: dict[str, str], variant: str) -> None:
    from nixify.diff import LazyDerivations

    eager = rca(roots, "base", variant)
    runner = LocalRunner()
    a, b = query_closure(runner, roots["base"]), query_closure(runner, roots[variant])
    lazy_source = LazyDerivations(runner)
    lazy = explain(diff_closures(a, b), lazy_source)

    def shape(r: RootCauseReport) -> list[tuple[str, list[dict[str, Any]], list[str], list[str]]]:
        return [
            (c.name, [x.to_json() for x in c.changes], sorted(c.consequences), sorted(c.removes))
            for c in r.causes
        ]

    assert shape(lazy) == shape(eager) and lazy.unexplained == eager.unexplained
    # Only the changed part of the graph is read, a level per round trip.
    everything = query_derivations(
        runner, [a.paths[a.root].deriver or "", b.paths[b.root].deriver or ""]
    )
    assert lazy_source.fetched < len(everything.drvs)
    assert lazy_source.round_trips <= 4


def test_rebuilds_are_summarised_in_the_human_report(roots: dict[str, str]) -> None:
    report = rca(roots, "base", "lib-patched")
    text = report.diff.render()
    assert "Rebuilt, same version (33):" in text
    assert "... and 21 more (--json lists them all)" in text
    assert len(report.diff.to_json()["rebuilt"]) == 33
