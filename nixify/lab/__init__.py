"""The lab: a real multi-host fleet on one machine (sshd + own /nix per host)."""

from nixify.lab.control import (
    down,
    fleet_for_state,
    host_alive,
    lab_fleet,
    reboot_host,
    start_host,
    status,
    stop_host,
    up,
)
from nixify.lab.plan import LabHost, lab_host_plan
from nixify.lab.state import LabHostState, LabState, default_dir, default_net, default_port

__all__ = [
    "LabHost",
    "LabHostState",
    "LabState",
    "default_dir",
    "default_net",
    "default_port",
    "down",
    "fleet_for_state",
    "host_alive",
    "lab_fleet",
    "lab_host_plan",
    "reboot_host",
    "start_host",
    "status",
    "stop_host",
    "up",
]
