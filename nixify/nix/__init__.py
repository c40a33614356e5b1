"""Running Nix: the offline configuration, store-path checks, command runners."""

from nixify.nix.env import NIX_OFFLINE_CONFIG, nix_environ
from nixify.nix.runner import CommandRunner, LocalRunner, SshRunner
from nixify.nix.store import STORE_DIR, is_store_path, store_path_name, store_path_root

__all__ = [
    "NIX_OFFLINE_CONFIG",
    "STORE_DIR",
    "CommandRunner",
    "LocalRunner",
    "SshRunner",
    "is_store_path",
    "nix_environ",
    "store_path_name",
    "store_path_root",
]
