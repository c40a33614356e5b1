"""Running Nix: the offline configuration, store-path checks, command runners."""

from nixify.nix.env import NIX_OFFLINE_CONFIG, nix_environ
from nixify.nix.runner import (
    CommandRunner,
    LocalRunner,
    SshRunner,
    TransportRunner,
    local_transport,
)
from nixify.nix.store import STORE_DIR, is_store_path, store_path_name, store_path_root

__all__ = [
    "NIX_OFFLINE_CONFIG",
    "STORE_DIR",
    "CommandRunner",
    "LocalRunner",
    "SshRunner",
    "TransportRunner",
    "is_store_path",
    "local_transport",
    "nix_environ",
    "store_path_name",
    "store_path_root",
]
