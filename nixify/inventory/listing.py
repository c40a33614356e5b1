"""A pyinfra inventory file as pyinfra loads it: each host's name, groups and data.

Commands that select hosts the way a deploy does (``nixify diff HOST``, ``nixify
cache warm``) read the same inventory file, through ``pyinfra INVENTORY
debug-inventory --json`` run from the project directory, so the inventory alone
decides which hosts exist and how they are reached.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixify.errors import ConfigError


@dataclass(frozen=True)
class InventoryHost:
    name: str
    groups: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


def list_inventory(inventory: str, root: Path) -> list[InventoryHost]:
    """Every host of the pyinfra ``inventory`` (a file, relative to ``root`` or not)."""
    if not (root / inventory).is_file() and not Path(inventory).is_file():
        raise ConfigError(f"--inventory {inventory}: no such file in {root}")
    pyinfra = Path(sys.executable).with_name("pyinfra")
    proc = subprocess.run(
        [str(pyinfra), inventory, "debug-inventory", "--json"],
        cwd=root, capture_output=True, text=True,
    )
    try:
        return [
            InventoryHost(
                str(h["name"]), tuple(str(g) for g in h.get("groups") or ()),
                dict(h.get("data") or {}),
            )
            for h in json.loads(proc.stdout)
        ]
    except (ValueError, TypeError, KeyError):
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("--> ")
        raise ConfigError(f"--inventory {inventory}: cannot load: {why}") from None


def inventory_groups(inventory: str, root: Path) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """group -> [(host, data)], every group pyinfra knows the hosts by."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for h in list_inventory(inventory, root):
        for group in h.groups:
            groups.setdefault(group, []).append((h.name, h.data))
    return groups
