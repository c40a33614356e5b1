"""How to reach each host: the private address map, and pyinfra's host data."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from nixify.errors import ConfigError
from nixify.inventory.fleet import Fleet, load_fleet, load_yaml
from nixify.inventory.hostkeys import (
    canonical_key,
    host_pattern,
    pinned_keys,
    write_pinned_known_hosts,
)
from nixify.inventory.model import ROLES, HostData

ADDRESSES_ENV = "NIXIFY_ADDRESSES"
DEFAULT_SOPS_ADDRESSES = Path("secrets/addresses.sops.yaml")
DEFAULT_RECORD = Path("secrets/recipients.yaml")


@dataclass(frozen=True)
class Connection:
    """Where a host answers SSH, and with which credentials."""

    address: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    known_hosts_file: str | None = None
    host_key: str | None = None  # the pinned key (``TYPE BASE64``), when one is declared

    @property
    def known_hosts_pattern(self) -> str:
        """How a known_hosts file names this host (``[address]:port`` off port 22)."""
        return host_pattern(self.address, self.port)

    def pyinfra_data(self) -> dict[str, Any]:
        """pyinfra's connection data. Host keys are always checked strictly: a host
        whose key is not known is refused, never trusted on first use."""
        data: dict[str, Any] = {
            "ssh_hostname": self.address,
            "ssh_port": self.port,
            "ssh_user": self.user,
            "ssh_strict_host_key_checking": "yes",
        }
        if self.key_file:
            data["ssh_key"] = self.key_file
        if self.known_hosts_file:
            data["ssh_known_hosts_file"] = self.known_hosts_file
        return data


def _how_to_provide(fleet: Fleet) -> str:
    return (
        f"the real fleet's addresses are kept out of git: set {ADDRESSES_ENV}=/path/to/"
        "addresses.yaml (a private map: `host: {address: ..., port: 22, host_key: "
        "ssh-ed25519 AAAA...}` for each of "
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


def _unpinned(path: Path, name: str, conn: Connection) -> str:
    return (
        f"{path}: host {name!r}: no pinned host key (nixify never trusts a key on first "
        f"use): add `host_key: ssh-ed25519 AAAA...` to its entry (the key checked out of "
        f"band, e.g. `ssh-keyscan -t ed25519 -p {conn.port} {conn.address}` on a trusted "
        "path), or name a `known_hosts_file` that holds it"
    )


def _pin(
    path: Path, name: str, conn: Connection, entry: Mapping[str, Any], fallback: str | None
) -> tuple[Connection | None, str | None]:
    """The connection with its pinned key, or an error naming the host and field."""
    key = entry.get("host_key")
    if key is not None:
        if not isinstance(key, str):
            return None, f"{path}: host {name!r}: field 'host_key': expected 'ssh-ed25519 AAAA...'"
        try:
            key = canonical_key(key, f"{path}: host {name!r}: field 'host_key'")
        except ConfigError as exc:
            return None, str(exc)
    known = conn.known_hosts_file
    if known:
        try:
            text = Path(known).read_text()
        except OSError as exc:
            return None, (
                f"{path}: host {name!r}: field 'known_hosts_file': cannot read {known}: "
                f"{exc.strerror}"
            )
        pins = pinned_keys(text, [conn.known_hosts_pattern])
        if not pins:
            return None, (
                f"{path}: host {name!r}: field 'known_hosts_file': {known} pins no key for "
                f"{conn.known_hosts_pattern}; add `host_key: ssh-ed25519 AAAA...` to its entry "
                "or the key to that file"
            )
        if key is not None and key not in pins:
            return None, (
                f"{path}: host {name!r}: field 'host_key' differs from the key {known} pins "
                f"for {conn.known_hosts_pattern} (rotated? `nixify secrets rotate-host {name}`)"
            )
        return replace(conn, host_key=key or pins[0]), None
    key = key or fallback
    if key is None:
        return None, _unpinned(path, name, conn)
    return replace(conn, host_key=key), None


def load_address_map(
    fleet: Fleet,
    path: Path | None = None,
    decrypt: Decrypter | None = None,
    recorded: Mapping[str, str] | None = None,
    state: Path | None = None,
) -> dict[str, Connection]:
    """Every host's connection, from the private map (a sops file is opened with
    ``decrypt``). Errors name the host and field.

    Every host's key is pinned, never trusted on first use: by the entry's
    ``host_key``, else by its ``known_hosts_file`` (which must pin the host), else
    by the fleet declaration's ``ssh_host_key``, else by ``recorded`` (host ->
    key, the secrets recipients record). Hosts pinned by a key get a known_hosts
    file nixify writes (under ``state``, default ``nixify.inventory.hostkeys.state_dir``)
    holding exactly those keys. A host with no pin is an error naming it.
    """
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
    recorded = recorded or {}
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
        conn = Connection(
            address=entry["address"],
            port=port,
            user=str(entry.get("user", "root")),
            key_file=entry.get("key_file"),
            known_hosts_file=entry.get("known_hosts_file"),
        )
        pinned, error = _pin(
            path, host.name, conn, entry, host.ssh_host_key or recorded.get(host.name)
        )
        if pinned is None:
            errors.append(error or f"{path}: host {host.name!r}: unpinned")
            continue
        result[host.name] = pinned
    for name in doc:
        if name not in fleet.hosts:
            errors.append(f"{path}: host {name!r}: not in the fleet ({fleet.source})")
    if errors:
        raise ConfigError("invalid address map:\n" + "\n".join(errors))
    by_key = {n: c for n, c in result.items() if not c.known_hosts_file and c.host_key}
    if by_key:
        known = write_pinned_known_hosts(
            {c.known_hosts_pattern: c.host_key for c in by_key.values() if c.host_key}, state
        )
        for name, conn in by_key.items():
            result[name] = replace(conn, known_hosts_file=str(known))
    return result


def recorded_host_keys(path: Path) -> dict[str, str]:
    """host -> ``ssh_host_key`` of a secrets recipients record (``recipients.yaml``);
    empty when there is none. Only the keys are read: the record's own checks are
    the secrets subsystem's."""
    if not path.is_file():
        return {}
    doc = load_yaml(path) or {}
    hosts = doc.get("hosts") if isinstance(doc, Mapping) else None
    out: dict[str, str] = {}
    for name, data in (hosts or {}).items() if isinstance(hosts, Mapping) else ():
        if isinstance(data, Mapping) and isinstance(data.get("ssh_host_key"), str):
            out[str(name)] = canonical_key(data["ssh_host_key"], f"{path}: hosts.{name}")
    return out


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
    hosts_file: Path, decrypt: Decrypter | None = None, record: Path | None = None
) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The real fleet's groups: validated host data plus the private address map
    (opened with ``decrypt`` when it is sops-encrypted), every host key pinned (the
    map's, the declaration's, or the secrets recipients record's, ``record``,
    default ``secrets/recipients.yaml``)."""
    fleet = load_fleet(hosts_file)
    recorded = recorded_host_keys(record or DEFAULT_RECORD)
    return pyinfra_groups(fleet, load_address_map(fleet, decrypt=decrypt, recorded=recorded))


def ssh_args_from_data(name: str, data: Any) -> list[str]:
    """OpenSSH arguments (before the command) that reach a host from its pyinfra data
    (anything with ``.get``: a dict or pyinfra's host data).

    With a generated ssh_config (the lab) the host's name is enough; otherwise the
    address, port, user, key and known-hosts file come from the data.
    """
    config = data.get("ssh_config")
    if config:
        return ["-F", str(config), name]
    # never trust on first use: an unknown or changed host key is refused
    args = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "StrictHostKeyChecking=yes"]
    port = data.get("ssh_port")
    key = data.get("ssh_key")
    known = data.get("ssh_known_hosts_file")
    if port:
        args += ["-p", str(port)]
    if key:
        args += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    if known:
        args += ["-o", f"UserKnownHostsFile={known}"]
    user = data.get("ssh_user") or "root"
    return [*args, f"{user}@{data.get('ssh_hostname') or name}"]
