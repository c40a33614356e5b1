"""Closure diff and root-cause analysis (gate 2 of the deploy pipeline)."""

from nixify.diff.closure import (
    Closure,
    LocalStoreDatabase,
    PathInfo,
    closure_query_command,
    parse_closure_query,
    query_closure,
)
from nixify.diff.names import PackageName, parse_package_name, split_drv_name, split_output
from nixify.diff.versions import ClosureDiff, PackageChange, diff_closures

__all__ = [
    "Closure",
    "ClosureDiff",
    "LocalStoreDatabase",
    "PackageChange",
    "PackageName",
    "PathInfo",
    "closure_query_command",
    "diff_closures",
    "parse_closure_query",
    "parse_package_name",
    "query_closure",
    "split_drv_name",
    "split_output",
]
