"""How to reach each host: the private address map, and pyinfra's host data."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nixify.errors import ConfigError
from nixify.inventory.fleet import Fleet, load_fleet, load_yaml
from nixify.inventory.model import ROLES, HostData

ADDRESSES_ENV = "NIXIFY_ADDRESSES"
DEFAULT_SOPS_ADDRESSES = Path("secrets/addresses.sops.yaml")


@dataclass(frozen=True)
class Connection:
    """Where a host answers SSH, and with which credentials."""

    address: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    known_hosts_file: str | None = None

    def pyinfra_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ssh_hostname": self.address,
            "ssh_port": self.port,
            "ssh_user": self.user,
        }
        if self.key_file:
            data["ssh_key"] = self.key_file
        if self.known_hosts_file:
            data["ssh_known_hosts_file"] = self.known_hosts_file
            data["ssh_strict_host_key_checking"] = "yes"
        return data


def _how_to_provide(fleet: Fleet) -> str:
    return (
        f"the real fleet's addresses are kept out of git: set {ADDRESSES_ENV}=/path/to/"
        "addresses.yaml (a private map: `host: {address: ..., port: 22}` for each of "
        f"{', '.join(list(fleet.hosts)[:3])}, ...), or keep it sops-encrypted as "
        f"{DEFAULT_SOPS_ADDRESSES}"
    )


Decrypter = Callable[[Path], str]
"""A sops file's plaintext, decrypted in memory (``nixify.secrets.sopsfile.decrypt_file``)."""


def _read_map(path: Path, decrypt: Decrypter | None) -> Any:
    """The address map, decrypted in memory by ``decrypt`` when it is a sops file."""
    doc = load_yaml(path)
    if isinstance(doc, Mapping) and "sops" in doc:
        if decrypt is None:
            raise ConfigError(f"{path}: sops-encrypted, and no decrypter was given to read it")
        return yaml.safe_load(decrypt(path))
    return doc


def load_address_map(
    fleet: Fleet, path: Path | None = None, decrypt: Decrypter | None = None
) -> dict[str, Connection]:
    """Every host's connection, from the private map (a sops file is opened with
    ``decrypt``). Errors name the host and field."""
    if path is None:
        env = os.environ.get(ADDRESSES_ENV)
        if env:
            path = Path(env)
        elif DEFAULT_SOPS_ADDRESSES.exists():
            path = DEFAULT_SOPS_ADDRESSES
        else:
            raise ConfigError(f"no address map: {_how_to_provide(fleet)}")
    if not path.exists():
        raise ConfigError(
            f"{path}: address map not found ({ADDRESSES_ENV}); {_how_to_provide(fleet)}"
        )
    doc = _read_map(path, decrypt)
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: expected a mapping of host -> address")
    result: dict[str, Connection] = {}
    errors: list[str] = []
    for host in fleet:
        entry = doc.get(host.name)
        if entry is None:
            errors.append(f"{path}: host {host.name!r}: field 'address': missing")
            continue
        if isinstance(entry, str):
            entry = {"address": entry}
        if not isinstance(entry, Mapping) or not isinstance(entry.get("address"), str):
            errors.append(f"{path}: host {host.name!r}: field 'address': expected a string")
            continue
        port = entry.get("port", 22)
        if not isinstance(port, int) or not 0 < port < 65536:
            errors.append(f"{path}: host {host.name!r}: field 'port': not a TCP port: {port!r}")
            continue
        result[host.name] = Connection(
            address=entry["address"],
            port=port,
            user=str(entry.get("user", "root")),
            key_file=entry.get("key_file"),
            known_hosts_file=entry.get("known_hosts_file"),
        )
    for name in doc:
        if name not in fleet.hosts:
            errors.append(f"{path}: host {name!r}: not in the fleet ({fleet.source})")
    if errors:
        raise ConfigError("invalid address map:\n" + "\n".join(errors))
    return result


def host_pyinfra_data(host: HostData, connection: Connection, **extra: Any) -> dict[str, Any]:
    """The data pyinfra carries for a host: its typed fields plus its connection."""
    data: dict[str, Any] = host.model_dump(mode="json")
    data["builders"] = list(host.builders)
    data["secrets"] = list(host.secrets)
    data["constrained"] = host.constrained
    data.update(connection.pyinfra_data())
    data.update(extra)
    return data


def pyinfra_groups(
    fleet: Fleet, connections: Mapping[str, Connection], **extra: Any
) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """One pyinfra group per role (every role present, maybe empty)."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {role: [] for role in ROLES}
    for host in fleet:
        groups[host.role].append(
            (host.name, host_pyinfra_data(host, connections[host.name], **extra))
        )
    return groups


def fleet_groups(
    hosts_file: Path, decrypt: Decrypter | None = None
) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The real fleet's groups: validated host data plus the private address map
    (opened with ``decrypt`` when it is sops-encrypted)."""
    fleet = load_fleet(hosts_file)
    return pyinfra_groups(fleet, load_address_map(fleet, decrypt=decrypt))


def ssh_args_from_data(name: str, data: Any) -> list[str]:
    """OpenSSH arguments (before the command) that reach a host from its pyinfra data
    (anything with ``.get``: a dict or pyinfra's host data).

    With a generated ssh_config (the lab) the host's name is enough; otherwise the
    address, port, user, key and known-hosts file come from the data.
    """
    config = data.get("ssh_config")
    if config:
        return ["-F", str(config), name]
    args = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
    port = data.get("ssh_port")
    key = data.get("ssh_key")
    known = data.get("ssh_known_hosts_file")
    if port:
        args += ["-p", str(port)]
    if key:
        args += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    if known:
        args += ["-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes"]
    user = data.get("ssh_user") or "root"
    return [*args, f"{user}@{data.get('ssh_hostname') or name}"]
