"""Closure diff and root-cause analysis (gate 2 of the deploy pipeline).

Gather (a command to run on a host) is split from compute (pure functions on
its output), so pyinfra facts can do the first and tests the second:

    closure_query_command(path) / parse_closure_query(text, root) / query_closure(runner, path)
    derivations_query_command(drvs) / parse_derivations(text) / query_derivations(runner, drvs)
    diff_closures(old, new) -> ClosureDiff          (.to_json(), .render(), .counts())
    explain(diff, old_drvs, new_drvs) -> RootCauseReport
    DriftPolicy(expected, accept).check(diff, rca) -> DriftVerdict
    closure_gate(running, candidate, drvs, policy) -> GateReport   (all of it at once)
"""

from nixify.diff.closure import (
    CURRENT_SYSTEM,
    Closure,
    LocalStoreDatabase,
    PathInfo,
    closure_query_command,
    parse_closure_query,
    query_closure,
)
from nixify.diff.derivations import (
    Derivation,
    DerivationSet,
    DerivationSource,
    LazyDerivations,
    derivations_query_command,
    parse_derivations,
    query_derivations,
)
from nixify.diff.drift import DriftPolicy, DriftVerdict
from nixify.diff.gate import GateReport, closure_gate
from nixify.diff.names import PackageName, parse_package_name, split_drv_name, split_output
from nixify.diff.rca import Cause, Change, RootCauseReport, Unexplained, explain
from nixify.diff.versions import ClosureDiff, PackageChange, diff_closures

__all__ = [
    "CURRENT_SYSTEM",
    "Cause",
    "Change",
    "Closure",
    "ClosureDiff",
    "Derivation",
    "DerivationSet",
    "DerivationSource",
    "DriftPolicy",
    "DriftVerdict",
    "GateReport",
    "LazyDerivations",
    "LocalStoreDatabase",
    "PackageChange",
    "PackageName",
    "PathInfo",
    "RootCauseReport",
    "Unexplained",
    "closure_gate",
    "closure_query_command",
    "derivations_query_command",
    "diff_closures",
    "explain",
    "parse_closure_query",
    "parse_derivations",
    "parse_package_name",
    "query_closure",
    "query_derivations",
    "split_drv_name",
    "split_output",
]
