"""The version diff: per package name, which versions left and which arrived.

Paths are grouped by ``(name, version)`` exactly as ``nix store diff-closures``
groups them (see ``nixify.diff.names``). A name whose version set changed is a
package change; a name only in the new closure is added, only in the old one
removed. A name whose versions did not change but whose paths did is a
rebuild: the RCA explains those instead of listing them as noise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nixify.diff.closure import Closure
from nixify.diff.names import parse_package_name
from nixify.diff.render import render_diff
from nixify.nix import store_path_name

# diff-closures prints a size delta only from this many bytes on.
NIX_SIZE_THRESHOLD = 8 * 1024


@dataclass(frozen=True, slots=True)
class PackageGroup:
    """All paths of one package name in one closure, by version."""

    versions: dict[str, list[str]]  # version -> paths
    size: int


@dataclass(frozen=True, slots=True)
class PackageChange:
    """One package name and how it differs between the closures."""

    name: str
    old_versions: tuple[str, ...]
    new_versions: tuple[str, ...]
    old_size: int
    new_size: int
    old_paths: tuple[str, ...]
    new_paths: tuple[str, ...]

    @property
    def size_delta(self) -> int:
        return self.new_size - self.old_size

    @property
    def removed_versions(self) -> tuple[str, ...]:
        new = set(self.new_versions)
        return tuple(v for v in self.old_versions if v not in new)

    @property
    def added_versions(self) -> tuple[str, ...]:
        old = set(self.old_versions)
        return tuple(v for v in self.new_versions if v not in old)

    @property
    def kind(self) -> str:
        """``added``, ``removed``, ``changed`` (versions), ``rebuilt`` or ``unchanged``."""
        if not self.old_paths:
            return "added"
        if not self.new_paths:
            return "removed"
        if self.removed_versions or self.added_versions:
            return "changed"
        if set(self.old_paths) != set(self.new_paths):
            return "rebuilt"
        return "unchanged"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "old_versions": list(self.old_versions),
            "new_versions": list(self.new_versions),
            "removed_versions": list(self.removed_versions),
            "added_versions": list(self.added_versions),
            "size_delta": self.size_delta,
        }


def group_closure(closure: Closure) -> dict[str, PackageGroup]:
    """Package name -> its versions (and their paths) and total NAR size."""
    versions: dict[str, dict[str, list[str]]] = {}
    sizes: dict[str, int] = {}
    for path, info in closure.paths.items():
        # /nix/store/ + 32-character hash + "-": the name starts at 44.
        base = path[44:] if path[43:44] == "-" else store_path_name(path)
        name, version, _output = parse_package_name(base)
        versions.setdefault(name, {}).setdefault(version, []).append(path)
        sizes[name] = sizes.get(name, 0) + info.nar_size
    return {n: PackageGroup(v, sizes[n]) for n, v in versions.items()}


def _show_versions(versions: Iterable[str]) -> str:
    """diff-closures' version list: sorted, ``ε`` for empty, ``∅`` for none."""
    items = sorted("ε" if v == "" else v for v in versions)
    return ", ".join(items) if items else "∅"


def _sorted_key(s: str) -> bytes:
    return s.encode()


@dataclass(frozen=True)
class ClosureDiff:
    """The difference between two closures, package by package."""

    old: Closure
    new: Closure
    changes: tuple[PackageChange, ...]  # every name whose paths differ, sorted

    # -- selections ---------------------------------------------------------
    def _kind(self, kind: str) -> list[PackageChange]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def packages(self) -> list[PackageChange]:
        """Names in both closures whose versions changed."""
        return self._kind("changed")

    @property
    def added(self) -> list[PackageChange]:
        return self._kind("added")

    @property
    def removed(self) -> list[PackageChange]:
        return self._kind("removed")

    @property
    def rebuilt(self) -> list[PackageChange]:
        """Same versions, different paths: rebuilds for the RCA to explain."""
        return self._kind("rebuilt")

    @property
    def added_paths(self) -> frozenset[str]:
        """Paths in the new closure and not in the old one."""
        return frozenset(p for p in self.new.paths if p not in self.old.paths)

    @property
    def removed_paths(self) -> frozenset[str]:
        return frozenset(p for p in self.old.paths if p not in self.new.paths)

    @property
    def size_delta(self) -> int:
        return self.new.nar_size - self.old.nar_size

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, int]:
        """The summary the pipeline's report shows."""
        return {
            "changed": len(self.packages),
            "added": len(self.added),
            "removed": len(self.removed),
            "rebuilt": len(self.rebuilt),
            "old_paths": len(self.old.paths),
            "new_paths": len(self.new.paths),
            "size_delta": self.size_delta,
        }

    def version_findings(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """name -> (removed versions, added versions), for names whose versions moved.

        The same set ``nix store diff-closures`` reports as ``name: OLD → NEW``.
        """
        out: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for c in self.changes:
            removed, added = c.removed_versions, c.added_versions
            if removed or added:
                out[c.name] = (tuple(sorted(removed)), tuple(sorted(added)))
        return out

    # -- output -------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def entry(c: PackageChange, versions: tuple[str, ...], size: int) -> dict[str, Any]:
            return {"name": c.name, "versions": list(versions), "size": size}

        return {
            "packages": [c.to_json() for c in self.packages],
            "added": [entry(c, c.new_versions, c.new_size) for c in self.added],
            "removed": [entry(c, c.old_versions, c.old_size) for c in self.removed],
            "rebuilt": [
                {
                    "name": c.name,
                    "versions": list(c.new_versions),
                    "size_delta": c.size_delta,
                    "paths": len(set(c.new_paths) - set(c.old_paths)),
                }
                for c in self.rebuilt
            ],
            "closure": {
                "old": self.old.root,
                "new": self.new.root,
                "old_paths": len(self.old.paths),
                "new_paths": len(self.new.paths),
                "old_size": self.old.nar_size,
                "new_size": self.new.nar_size,
                "size_delta": self.size_delta,
            },
            "counts": self.counts(),
        }

    def render(self, color: bool = False) -> str:
        """Human output, nvd-like: changed, added, removed, rebuilt, then the totals."""
        return render_diff(self, color=color)

    def render_nix_style(self) -> str:
        """The lines ``nix store diff-closures`` prints, without its colour codes."""
        lines = []
        for c in self.changes:
            removed, added = c.removed_versions, c.added_versions
            items = []
            if removed or added:
                items.append(f"{_show_versions(removed)} → {_show_versions(added)}")
            if abs(c.size_delta) >= NIX_SIZE_THRESHOLD:
                items.append(f"{c.size_delta / 1024.0:+.1f} KiB")
            if items:
                lines.append(f"{c.name}: {', '.join(items)}")
        return "".join(line + "\n" for line in lines)


def diff_closures(old: Closure, new: Closure) -> ClosureDiff:
    """Compare two closures by package name (pure)."""
    old_groups = group_closure(old)
    new_groups = group_closure(new)
    empty = PackageGroup({}, 0)
    changes = []
    for name in sorted(old_groups.keys() | new_groups.keys(), key=_sorted_key):
        o = old_groups.get(name, empty)
        n = new_groups.get(name, empty)
        o_paths = tuple(sorted(p for ps in o.versions.values() for p in ps))
        n_paths = tuple(sorted(p for ps in n.versions.values() for p in ps))
        if o_paths == n_paths:
            continue
        changes.append(
            PackageChange(
                name,
                tuple(sorted(o.versions, key=_sorted_key)),
                tuple(sorted(n.versions, key=_sorted_key)),
                o.size,
                n.size,
                o_paths,
                n_paths,
            )
        )
    return ClosureDiff(old, new, tuple(changes))
