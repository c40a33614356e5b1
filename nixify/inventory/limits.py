"""`--limit` that matches nothing is an error, not an empty success."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatch
from typing import Any

from nixify.errors import ConfigError


def limit_patterns(argv: Sequence[str]) -> list[str]:
    """The ``--limit`` values of a pyinfra command line (repeated or comma-joined)."""
    found: list[str] = []
    args = list(argv)
    for i, arg in enumerate(args):
        value = None
        if arg == "--limit" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--limit="):
            value = arg.split("=", 1)[1]
        if value is not None:
            found.extend(v for v in value.split(",") if v)
    return found


def check_limits(
    patterns: Iterable[str],
    groups: Mapping[str, Sequence[tuple[str, Any]]],
    extra_groups: Iterable[str] = (),
) -> None:
    """Every pattern must name a group (role) or match a host name, as pyinfra matches."""
    names = [h for members in groups.values() for h, _ in members]
    known_groups = {g for g, members in groups.items() if members} | set(extra_groups)
    bad = [p for p in patterns if p not in known_groups and not any(fnmatch(n, p) for n in names)]
    if bad:
        raise ConfigError(
            f"--limit {', '.join(bad)}: matches no role or host (roles: "
            f"{', '.join(sorted(g for g, m in groups.items() if m))}; hosts: {', '.join(names)})"
        )


def comma_groups(
    argv: Sequence[str], groups: Mapping[str, Sequence[tuple[str, Any]]]
) -> dict[str, list[tuple[str, Any]]]:
    """Ansible's ``--limit nas,laptop``: pyinfra takes one pattern per ``--limit``,
    so each comma-joined value becomes a group of its own (the union of what its
    parts match), for the inventory to declare beside the roles."""
    hosts = {h: data for members in groups.values() for h, data in members}
    out: dict[str, list[tuple[str, Any]]] = {}
    for value in _raw_limits(argv):
        if "," not in value:
            continue
        names: list[str] = []
        for part in (p for p in value.split(",") if p):
            matched = [h for h, _ in groups[part]] if part in groups else [
                h for h in hosts if fnmatch(h, part)
            ]
            names.extend(n for n in matched if n not in names)
        out[value] = [(n, hosts[n]) for n in names]
    return out


def _raw_limits(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    found: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--limit" and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith("--limit="):
            found.append(arg.split("=", 1)[1])
    return found
