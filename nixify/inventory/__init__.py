"""The fleet by role: typed host data, the fleet declaration, connections."""

from nixify.inventory.connect import (
    ADDRESSES_ENV,
    Connection,
    fleet_groups,
    host_pyinfra_data,
    load_address_map,
    pyinfra_groups,
    recorded_host_keys,
    ssh_args_from_data,
)
from nixify.inventory.fleet import Fleet, build_fleet, load_fleet
from nixify.inventory.model import (
    BUILDER_ROLES,
    CONSTRAINED_ROLES,
    NIX_SYSTEMS,
    ROLES,
    HostData,
)

__all__ = [
    "ADDRESSES_ENV",
    "BUILDER_ROLES",
    "CONSTRAINED_ROLES",
    "NIX_SYSTEMS",
    "ROLES",
    "Connection",
    "Fleet",
    "HostData",
    "build_fleet",
    "fleet_groups",
    "host_pyinfra_data",
    "load_address_map",
    "load_fleet",
    "pyinfra_groups",
    "recorded_host_keys",
    "ssh_args_from_data",
]
