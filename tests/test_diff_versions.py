"""The version diff equals `nix store diff-closures` on real closures built offline."""

from __future__ import annotations

from typing import Any

import pytest
from diff_fixtures.nixbuild import build, nix_diff_closures, parse_nix_findings

from nixify.diff import LocalStoreDatabase, diff_closures, parse_package_name, query_closure
from nixify.diff.versions import ClosureDiff
from nixify.nix import LocalRunner

BASE: list[dict[str, Any]] = [
    {"name": "libfoo-1.0"},
    {"name": "app-2.0", "deps": ["libfoo-1.0"]},
    {"name": "tool-1.0-bin", "deps": ["libfoo-1.0"]},
    {"name": "hello-world"},
    {"name": "oldpkg-1.2"},
    {"name": "renamed-old-3.1"},
    {"name": "libz-1.2"},
    {"name": "libz-1.3"},
    {"name": "nover"},
    {"name": "big-1.0", "size": 100},
    {"name": "small-1.0", "size": 100},
    {"name": "libc-2.37-lib64"},
    {"name": "gcc-12.3.0-dev"},
    {"name": "multi-1.0", "outputs": ["out", "bin", "dev"]},
]


def _variant(
    changes: dict[str, dict[str, Any] | None], extra: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    out = []
    for spec in BASE:
        if spec["name"] in changes:
            new = changes[spec["name"]]
            if new is not None:
                out.append(new)
        else:
            out.append(spec)
    return out + extra


SCENARIOS: dict[str, list[dict[str, Any]]] = {
    "version-bump": _variant(
        {
            "libfoo-1.0": {"name": "libfoo-1.1"},
            "app-2.0": {"name": "app-2.0", "deps": ["libfoo-1.1"]},
            "tool-1.0-bin": {"name": "tool-1.0-bin", "deps": ["libfoo-1.1"]},
        },
        [],
    ),
    "added-removed": _variant({"oldpkg-1.2": None}, [{"name": "newpkg-0.9"}]),
    "rebuild-same-version": _variant(
        {"app-2.0": {"name": "app-2.0", "deps": ["libfoo-1.0"], "env": {"CFLAGS": "-O3"}}}, []
    ),
    "size-only": _variant(
        {
            "big-1.0": {"name": "big-1.0", "size": 40000},
            "small-1.0": {"name": "small-1.0", "size": 5000},
        },
        [],
    ),
    "renamed": _variant({"renamed-old-3.1": {"name": "renamed-new-3.1"}}, []),
    "multi-version": _variant({"libz-1.2": {"name": "libz-1.4"}}, [{"name": "libz-1.5"}]),
    "empty-version": _variant({"nover": {"name": "nover-1.0"}}, []),
    "outputs": _variant(
        {
            "libc-2.37-lib64": {"name": "libc-2.38-lib64"},
            "gcc-12.3.0-dev": {"name": "gcc-13.1.0-dev"},
            "hello-world": {"name": "hello-there"},
        },
        [],
    ),
    "multi-output": _variant(
        {"multi-1.0": {"name": "multi-1.1", "outputs": ["out", "bin"], "size": 9000}}, []
    ),
    "odd-names": _variant(
        {},
        [
            {"name": "foo-_x"},
            {"name": "bar-+1"},
            {"name": "a--b"},
            {"name": "Cap-Ab"},
            {"name": "d-1a-b2"},
        ],
    ),
}


@pytest.fixture(scope="module")
def roots() -> dict[str, str]:
    built = {"base": build(BASE)}
    for name, packages in SCENARIOS.items():
        built[name] = build(packages)
    return built


def _diff(old: str, new: str) -> ClosureDiff:
    db = LocalStoreDatabase()
    try:
        return diff_closures(db.query_closure(old), db.query_closure(new))
    finally:
        db.close()


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_version_changes_equal_nix_diff_closures(roots: dict[str, str], scenario: str) -> None:
    old, new = roots["base"], roots[scenario]
    nix_text = nix_diff_closures(old, new)
    diff = _diff(old, new)
    assert diff.version_findings() == parse_nix_findings(nix_text)
    # The whole report, line for line (sizes and thresholds included).
    assert diff.render_nix_style() == nix_text
    # And in the other direction.
    assert _diff(new, old).render_nix_style() == nix_diff_closures(new, old)


def test_expected_findings(roots: dict[str, str]) -> None:
    base = roots["base"]
    bump = _diff(base, roots["version-bump"])
    assert bump.version_findings() == {"libfoo": (("1.0",), ("1.1",))}
    assert [c.name for c in bump.packages] == ["libfoo"]
    assert {c.name for c in bump.rebuilt} == {"app", "tool", "system"}

    moved = _diff(base, roots["added-removed"])
    assert [c.name for c in moved.added] == ["newpkg"]
    assert [c.name for c in moved.removed] == ["oldpkg"]
    js = moved.to_json()
    assert js["added"] == [{"name": "newpkg", "versions": ["0.9"], "size": js["added"][0]["size"]}]
    assert js["removed"][0]["name"] == "oldpkg"
    assert js["closure"]["old_paths"] == js["closure"]["new_paths"] == len(BASE) + 3

    rebuild = _diff(base, roots["rebuild-same-version"])
    assert rebuild.version_findings() == {}
    assert {c.name for c in rebuild.rebuilt} == {"app", "system"}
    assert rebuild.counts()["changed"] == 0 and rebuild.counts()["rebuilt"] == 2

    multi = _diff(base, roots["multi-version"])
    (libz,) = multi.packages
    assert libz.old_versions == ("1.2", "1.3") and libz.new_versions == ("1.3", "1.4", "1.5")
    assert libz.removed_versions == ("1.2",) and libz.added_versions == ("1.4", "1.5")

    renamed = _diff(base, roots["renamed"])
    assert [c.name for c in renamed.added] == ["renamed-new"]
    assert [c.name for c in renamed.removed] == ["renamed-old"]

    sized = _diff(base, roots["size-only"])
    big = next(c for c in sized.rebuilt if c.name == "big")
    assert 39_800 <= big.size_delta <= 40_000  # 39,900 bytes more blob, NAR padding aside


def test_json_schema_keys(roots: dict[str, str]) -> None:
    js = _diff(roots["base"], roots["version-bump"]).to_json()
    assert {"packages", "added", "removed", "closure"} <= js.keys()
    assert set(js["packages"][0]) >= {"name", "old_versions", "new_versions", "size_delta"}
    assert set(js["closure"]) >= {"old_paths", "new_paths", "size_delta"}


def test_database_and_command_paths_agree(roots: dict[str, str]) -> None:
    runner = LocalRunner()
    db = LocalStoreDatabase()
    try:
        for root in (roots["base"], roots["outputs"]):
            via_nix = query_closure(runner, root)
            via_db = db.query_closure(root, with_references=True)
            assert via_db.paths == via_nix.paths
    finally:
        db.close()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hello-2.12", ("hello", "2.12", "")),
        ("hello-world", ("hello", "", "world")),
        ("tool-1.0-bin", ("tool", "1.0", "bin")),
        ("libc-2.37-lib64", ("libc", "2.37", "lib64")),
        ("foo-_x", ("foo", "_x", "")),
        ("a--b", ("a-", "", "b")),
        ("Cap-Ab", ("Cap-Ab", "", "")),
        ("system", ("system", "", "")),
        ("x-1.0-x86", ("x", "1.0-x86", "")),
    ],
)
def test_name_split(name: str, expected: tuple[str, str, str]) -> None:
    assert tuple(parse_package_name(name)) == expected
