"""Human output for the closure diff and the RCA: readable first, like nvd."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nixify.diff.rca import RootCauseReport
    from nixify.diff.versions import ClosureDiff, PackageChange

_RESET = "\033[0m"
_STYLES = {"U": "\033[1;33m", "A": "\033[1;32m", "R": "\033[1;31m", "B": "\033[1;36m"}


def human_size(n: int, signed: bool = False) -> str:
    """Bytes in binary units: ``1.5 MiB``; ``+``/``-`` prefixed when ``signed``."""
    sign = ("+" if n > 0 else "-" if n < 0 else "±") if signed else ""
    value = float(abs(n))
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            text = f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
            return f"{sign}{text}"
        value /= 1024
    raise AssertionError("unreachable")


def _versions(versions: tuple[str, ...]) -> str:
    return ", ".join(v if v else "ε" for v in versions) or "∅"


def _section(
    title: str,
    tag: str,
    changes: list[PackageChange],
    fmt: str,
    color: bool,
    limit: int | None = None,
) -> list[str]:
    if not changes:
        return []
    shown = changes if limit is None else changes[:limit]
    width = max(len(c.name) for c in shown)
    mark = f"{_STYLES[tag]}[{tag}]{_RESET}" if color else f"[{tag}]"
    lines = [f"{title} ({len(changes)}):"]
    for i, c in enumerate(shown, 1):
        if fmt == "changed":
            detail = f"{_versions(c.removed_versions)} -> {_versions(c.added_versions)}"
            kept = [v for v in c.new_versions if v in c.old_versions]
            if kept:
                detail += f" (kept {_versions(tuple(kept))})"
        elif fmt == "added":
            detail = _versions(c.new_versions)
        elif fmt == "removed":
            detail = _versions(c.old_versions)
        else:
            rebuilt = len(set(c.new_paths) - set(c.old_paths))
            detail = f"{_versions(c.new_versions)} ({rebuilt} path{'s' * (rebuilt != 1)} rebuilt)"
        size = human_size(c.size_delta, signed=True) if c.size_delta else ""
        lines.append(f"{mark} #{i:<3} {c.name:<{width}}  {detail}  {size}".rstrip())
    if len(shown) < len(changes):
        lines.append(f"    ... and {len(changes) - len(shown)} more (--json lists them all)")
    return [*lines, ""]


def render_diff(diff: ClosureDiff, color: bool = False, rebuilt_limit: int = 12) -> str:
    """The version diff as a report a person reads before a switch.

    Rebuilds at the same version are consequences, not news: the first
    ``rebuilt_limit`` are listed, the RCA says what caused them.
    """
    lines = [f"<<< {diff.old.root}", f">>> {diff.new.root}", ""]
    lines += _section("Version changes", "U", diff.packages, "changed", color)
    lines += _section("Added packages", "A", diff.added, "added", color)
    lines += _section("Removed packages", "R", diff.removed, "removed", color)
    lines += _section("Rebuilt, same version", "B", diff.rebuilt, "rebuilt", color, rebuilt_limit)
    if diff.is_empty:
        lines += ["No package changes.", ""]
    added, removed = len(diff.added_paths), len(diff.removed_paths)
    lines.append(
        f"Closure size: {len(diff.old.paths)} -> {len(diff.new.paths)} paths "
        f"({added} added, {removed} removed), "
        f"{human_size(diff.old.nar_size)} -> {human_size(diff.new.nar_size)} "
        f"({human_size(diff.size_delta, signed=True)})."
    )
    return "\n".join(lines) + "\n"


def _path_label(path: str) -> str:
    """``name`` of ``/nix/store/<hash>-name`` (the hash adds nothing for a reader)."""
    return path.split("-", 1)[1] if path.startswith("/nix/store/") and "-" in path else path


def render_rca(report: RootCauseReport, limit: int = 12) -> str:
    """Causes first, each with what it changed; then what stayed unexplained."""
    lines: list[str] = []
    if not report.causes and not report.unexplained:
        return "Root causes: none (the closures are identical).\n"
    lines.append(f"Root causes ({len(report.causes)}):")
    for i, cause in enumerate(report.causes, 1):
        n = len(cause.consequences)
        gone = f", {len(cause.removes)} removed" if cause.removes else ""
        lines.append(f"  #{i} {cause.name}: {n} new path{'s' * (n != 1)}{gone}")
        lines.extend(f"      - {change.describe()}" for change in cause.changes)
        shown = sorted(cause.consequences, key=_path_label)[:limit]
        for p in shown:
            lines.append(f"      -> {_path_label(p)}")
        rest = len(cause.consequences) - len(shown)
        if rest > 0:
            lines.append(f"      -> ... and {rest} more")
        if cause.removes:
            old = sorted(cause.removes, key=_path_label)
            lines.append(
                f"      x  replaces {', '.join(_path_label(p) for p in old[:limit])}"
                + (f" ... and {len(old) - limit} more" if len(old) > limit else "")
            )
    if report.unexplained:
        lines.append("")
        lines.append(f"Unexplained ({len(report.unexplained)}):")
        by_reason: dict[str, list[str]] = {}
        for u in report.unexplained:
            by_reason.setdefault(u.reason, []).append(f"{_path_label(u.path)} ({u.side})")
        for reason, paths in sorted(by_reason.items()):
            lines.append(f"  {reason}:")
            lines.extend(f"      {p}" for p in paths[:limit])
            if len(paths) > limit:
                lines.append(f"      ... and {len(paths) - limit} more")
    return "\n".join(lines) + "\n"
