"""The lab as a pyinfra inventory: the fleet's shape, pointed at the running lab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nixify.cache.config import CONFIG_NAME, DEFAULT_CONFIG_KEY, IDENTITY_FILE_KEY
from nixify.errors import ConfigError
from nixify.inventory import Connection, load_fleet, pyinfra_groups
from nixify.lab.control import fleet_for_state
from nixify.lab.secrets import LAB_OPERATOR_IDENTITY
from nixify.lab.state import LabState, default_dir

LAB_BOOT_ENTRY = "/nix/var/nixify-lab/boot/default"


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
    lab_dir = Path(state.dir)
    return pyinfra_groups(
        fleet,
        connections,
        ssh_config=state.ssh_config,
        secrets_dir=str(lab_dir / "secrets"),
        # generic host data the cache reads (nixify.cache.config): the lab's cache
        # (written by `nixify cache lab-setup`) and the lab operator's age identity
        **{
            DEFAULT_CONFIG_KEY: str(lab_dir / CONFIG_NAME),
            IDENTITY_FILE_KEY: str(lab_dir / LAB_OPERATOR_IDENTITY),
        },
        # the lab's systems keep their boot-loader entry here (fleet/switch-to-configuration.sh)
        boot_entry=LAB_BOOT_ENTRY,
    )
