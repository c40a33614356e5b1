"""The recipients record: who may decrypt, as collected from the hosts.

``recipients.yaml`` beside ``.sops.yaml`` in the secrets directory::

    operators:
      operator: age1...            # the operator's age recipient(s), by name
    hosts:
      nas-1:
        ssh_host_key: ssh-ed25519 AAAA...   # as the host-key fact read it
        age: age1...                         # derived from it
        previous: [age1...]                  # earlier keys (a rebuilt host)

Hosts' ``age`` recipients are always derived from ``ssh_host_key``; the record
keeps the line so a reader can check the derivation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from nixify.errors import ConfigError
from nixify.secrets.ssh_to_age import recipient_of_public_line
from nixify.util import atomic_write

RECORD_NAME = "recipients.yaml"


@dataclass(frozen=True)
class HostRecipient:
    name: str
    ssh_host_key: str
    age: str
    previous: tuple[str, ...] = ()


@dataclass
class RecipientsRecord:
    operators: dict[str, str] = field(default_factory=dict)
    hosts: dict[str, HostRecipient] = field(default_factory=dict)

    # ------------------------------------------------------------ queries

    @property
    def operator_recipients(self) -> list[str]:
        return [self.operators[k] for k in sorted(self.operators)]

    def host_recipients(self) -> dict[str, str]:
        return {name: h.age for name, h in sorted(self.hosts.items())}

    def label(self, recipient: str) -> str:
        """A person-readable name for a recipient (``operator:x``, ``host``, ``host (old)``)."""
        for name, r in self.operators.items():
            if r == recipient:
                return f"operator:{name}"
        for name, h in self.hosts.items():
            if h.age == recipient:
                return name
            if recipient in h.previous:
                return f"{name} (old key)"
        return f"unknown {recipient[:12]}...{recipient[-6:]}"

    # ------------------------------------------------------------ updates

    def set_host_key(self, name: str, line: str) -> str | None:
        """Record ``name``'s host key; 'new', 'changed' or None (unchanged)."""
        age = recipient_of_public_line(line, where=name)
        canonical = " ".join(line.split()[:2])
        old = self.hosts.get(name)
        if old is not None and old.age == age:
            return None
        previous = () if old is None else tuple(dict.fromkeys((*old.previous, old.age)))
        self.hosts[name] = HostRecipient(name, canonical, age, previous)
        return "new" if old is None else "changed"

    def forget_host(self, name: str) -> None:
        self.hosts.pop(name, None)

    # ------------------------------------------------------------ files

    @classmethod
    def load(cls, path: Path) -> RecipientsRecord:
        if not path.exists():
            return cls()
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{path}: expected a mapping with operators and hosts")
        record = cls()
        ops = doc.get("operators") or {}
        if not isinstance(ops, Mapping):
            raise ConfigError(f"{path}: operators must map a name to an age recipient")
        for name, rcpt in ops.items():
            if not isinstance(rcpt, str) or not rcpt.startswith("age1"):
                raise ConfigError(f"{path}: operators.{name} is not an age1... recipient")
            record.operators[str(name)] = rcpt
        hosts = doc.get("hosts") or {}
        if not isinstance(hosts, Mapping):
            raise ConfigError(f"{path}: hosts must map a host name to its key")
        for name, data in hosts.items():
            if not isinstance(data, Mapping) or not isinstance(data.get("ssh_host_key"), str):
                raise ConfigError(f"{path}: hosts.{name}.ssh_host_key missing")
            age = recipient_of_public_line(data["ssh_host_key"], where=f"{path}: hosts.{name}")
            if data.get("age") not in (None, age):
                raise ConfigError(
                    f"{path}: hosts.{name}.age does not match its ssh_host_key (edited by hand?)"
                )
            previous = tuple(str(p) for p in data.get("previous") or ())
            record.hosts[str(name)] = HostRecipient(str(name), data["ssh_host_key"], age, previous)
        return record

    def to_yaml(self) -> str:
        doc: dict[str, Any] = {
            "operators": dict(sorted(self.operators.items())),
            "hosts": {
                name: {
                    "ssh_host_key": h.ssh_host_key,
                    "age": h.age,
                    **({"previous": list(h.previous)} if h.previous else {}),
                }
                for name, h in sorted(self.hosts.items())
            },
        }
        header = "# nixify recipients record: host keys as the ssh host-key fact read them.\n"
        return header + yaml.safe_dump(doc, sort_keys=False, width=1000)

    def save(self, path: Path) -> bool:
        """Write atomically; False when the file already says the same."""
        text = self.to_yaml()
        if path.exists() and path.read_text() == text:
            return False
        atomic_write(path, text.encode())
        return True


def with_operator(record: RecipientsRecord, name: str, recipient: str) -> RecipientsRecord:
    new = replace(record, operators=dict(record.operators), hosts=dict(record.hosts))
    new.operators[name] = recipient
    return new
