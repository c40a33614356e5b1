"""Drift policy for gate 2: a change nobody declared fails the deploy.

A deploy may declare what it expects to change: package names (``openssl``),
derivation names (``openssl-3.0.13``) or cause labels (``env:NIX_CFLAGS``,
``openssl.version``, ``source:patch.diff``). A package change is expected
when its name is declared or, with an RCA, when every cause of its paths is
declared; an RCA cause is expected when one of its labels is declared. With
no declaration the gate reports and passes; ``accept=True`` passes a run whose
unexpected changes an operator accepted explicitly (they stay in the message).
"""

from __future__ import annotations

from dataclasses import dataclass

from nixify.diff.names import parse_package_name
from nixify.diff.rca import RootCauseReport
from nixify.diff.versions import ClosureDiff, PackageChange
from nixify.nix import store_path_name


@dataclass(frozen=True)
class DriftVerdict:
    """The gate's answer: ``ok`` to go on, and what was not expected."""

    ok: bool
    unexpected: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class DriftPolicy:
    """What a deploy declares it expects to change, and whether drift is accepted."""

    expected: frozenset[str] = frozenset()
    accept: bool = False

    @property
    def declared(self) -> bool:
        return bool(self.expected)

    def _package_expected(self, change: PackageChange, rca: RootCauseReport | None) -> bool:
        if change.name in self.expected:
            return True
        if rca is None:
            return False
        paths = set(change.new_paths) ^ set(change.old_paths)
        causes = [c for c in rca.causes if paths & (c.consequences | c.removes)]
        unexplained = any(u.path in paths for u in rca.unexplained)
        return bool(causes) and not unexplained and all(c.labels() & self.expected for c in causes)

    def check(self, diff: ClosureDiff, rca: RootCauseReport | None = None) -> DriftVerdict:
        """Judge ``diff`` (and its RCA, when there is one) against the declaration."""
        counts = diff.counts()
        summary = (
            f"{counts['changed']} changed, {counts['added']} added, {counts['removed']} removed, "
            f"{counts['rebuilt']} rebuilt"
        )
        if not self.declared:
            return DriftVerdict(
                True, (), f"no expected changes declared; reporting only: {summary}"
            )

        unexpected: list[str] = []
        for c in [*diff.packages, *diff.added, *diff.removed]:
            if not self._package_expected(c, rca):
                unexpected.append(f"package {c.kind} {c.name}")
        if rca is not None:
            for cause in rca.causes:
                if not cause.labels() & self.expected:
                    first = cause.changes[0].describe() if cause.changes else "changed"
                    unexpected.append(f"cause {cause.name}: {first}")
            for u in rca.unexplained:
                package = parse_package_name(store_path_name(u.path)).name
                if u.side == "new" and package not in self.expected:
                    unexpected.append(f"unexplained {u.path}: {u.reason}")
        if not unexpected:
            return DriftVerdict(True, (), f"all changes expected: {summary}")
        lines = "\n".join(f"  - {u}" for u in unexpected)
        if self.accept:
            return DriftVerdict(
                True, tuple(unexpected), f"unexpected changes accepted explicitly:\n{lines}"
            )
        expected = ", ".join(sorted(self.expected))
        return DriftVerdict(
            False,
            tuple(unexpected),
            f"changes outside the declared set ({expected}):\n{lines}",
        )
