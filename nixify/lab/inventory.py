"""The lab as a pyinfra inventory: the fleet's shape, pointed at the running lab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nixify.errors import ConfigError
from nixify.inventory import Connection, load_fleet, pyinfra_groups
from nixify.lab.control import fleet_for_state
from nixify.lab.state import LabState, default_dir


def lab_groups(
    hosts_file: Path, directory: Path | None = None
) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """One group per role, each host with its validated data and lab connection."""
    directory = directory or default_dir()
    state = LabState.load(directory)
    if state is None:
        raise ConfigError(
            f"no lab in {directory}: run `nixify lab up` first (or set NIXIFY_LAB_DIR)"
        )
    fleet = fleet_for_state(load_fleet(hosts_file), state)
    connections = {
        h.name: Connection(h.address, h.port, "root", state.operator_key, state.known_hosts)
        for h in state.hosts
    }
    return pyinfra_groups(
        fleet,
        connections,
        lab_dir=state.dir,
        ssh_config=state.ssh_config,
        secrets_dir=str(Path(state.dir) / "secrets"),
    )
