"""The lab's record of itself: where it lives, which hosts, which processes."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nixify.errors import ConfigError
from nixify.util import atomic_write

DEFAULT_DIR = Path("/var/tmp/nixify-lab")
DEFAULT_NET = "127.0.0"
DEFAULT_PORT = 2222
FIRST_OCTET = 10
STATE_FILE = "lab.json"


def default_dir() -> Path:
    return Path(os.environ.get("NIXIFY_LAB_DIR", str(DEFAULT_DIR)))


def default_net() -> str:
    return os.environ.get("NIXIFY_LAB_NET", DEFAULT_NET)


def default_port() -> int:
    return int(os.environ.get("NIXIFY_LAB_PORT", str(DEFAULT_PORT)))


@dataclass
class LabHostState:
    """One lab host: a real sshd in its own mount namespace."""

    name: str
    role: str
    declared: bool
    address: str
    port: int
    root: str
    pid: int = 0
    mnt_ns: str = ""
    initial_system: str = ""

    @property
    def host_key_pub(self) -> str:
        return f"{self.root}/etc-ssh/ssh_host_ed25519_key.pub"


@dataclass
class LabState:
    """The whole lab, as saved in ``<dir>/lab.json``."""

    dir: str
    net: str
    port: int
    hosts: list[LabHostState] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return Path(self.dir) / STATE_FILE

    @property
    def operator_key(self) -> str:
        return f"{self.dir}/operator_ed25519"

    @property
    def builder_key(self) -> str:
        return f"{self.dir}/builder_ed25519"

    @property
    def ssh_config(self) -> str:
        return f"{self.dir}/ssh_config"

    @property
    def known_hosts(self) -> str:
        return f"{self.dir}/known_hosts"

    def host(self, name: str) -> LabHostState:
        for h in self.hosts:
            if h.name == name:
                return h
        raise ConfigError(f"lab {self.dir}: no host named {name!r}")

    def save(self) -> None:
        atomic_write(self.path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> LabState | None:
        path = directory / STATE_FILE
        if not path.exists():
            return None
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
            hosts = [LabHostState(**h) for h in raw.pop("hosts")]
            return cls(hosts=hosts, **raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{path}: unreadable lab state ({exc}); remove it") from None

    def ssh_args(self, host: str) -> list[str]:
        """Arguments for ``ssh`` (before the command) that reach ``host`` as root."""
        return ["-F", self.ssh_config, host]
