"""A host's key, live: did it change since it was recorded, and the rotation after
a reinstall.

``live_keys`` asks every host, through the inventory's connection data and
without logging in (the key exchange only), which ed25519 key it presents now.
``rotate_host`` makes a reinstalled host whole again, step by step, each step
idempotent (a second run changes nothing; a run that stopped half-way is
finished by running it again): the recipients record, ``.sops.yaml``, a rekey
of the files the host mounts, the address map's pinned ``host_key``, the
operator's known_hosts, and each builder's ``/root/.ssh/known_hosts`` (builders
copy closures to hosts over SSH, checking the host key).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nixify.errors import ConfigError
from nixify.inventory import BUILDER_ROLES, ssh_args_from_data
from nixify.inventory.hostkeys import (
    SCAN_TIMEOUT,
    ScannedKey,
    canonical_key,
    host_pattern,
    replace_host_key,
    scan_host_key,
    state_dir,
)
from nixify.secrets.authoring import parse_plaintext
from nixify.secrets.keys import find_identities, identities_from_file
from nixify.secrets.sopsfile import SopsError, SopsFile, encrypt_tree
from nixify.transport import CommandFailed, HostUnreachable, SshTransport
from nixify.util import atomic_write

BUILDER_KNOWN_HOSTS = "/root/.ssh/known_hosts"

HostData = Mapping[str, Any]


def _where(data: HostData, name: str) -> tuple[str, int]:
    return str(data.get("ssh_hostname") or name), int(data.get("ssh_port") or 22)


def live_keys(
    hosts: Mapping[str, HostData], timeout: int = SCAN_TIMEOUT
) -> dict[str, ScannedKey]:
    """host -> the key it presents now (in parallel, ``timeout`` seconds each)."""
    names = sorted(hosts)
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(names)))) as pool:
        found = pool.map(lambda n: scan_host_key(*_where(hosts[n], n), timeout=timeout), names)
        return dict(zip(names, found, strict=True))


# ------------------------------------------------------------------ rotation steps


@dataclass
class Step:
    """What one step of a rotation did, in one line; ``ok`` False when it failed."""

    what: str
    ok: bool = True


@dataclass
class Rotation:
    host: str
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    def say(self, what: str, ok: bool = True) -> None:
        self.steps.append(Step(what, ok))


def update_known_hosts_file(
    path: Path, names: Sequence[str], key: str, pattern: str
) -> bool:
    """Pin ``key`` for ``names`` in a local known_hosts file; False when already so."""
    text = path.read_text() if path.exists() else ""
    new = replace_host_key(text, names, key, pattern)
    if new == text:
        return False
    atomic_write(path, new.encode())
    return True


def is_generated_known_hosts(path: str) -> bool:
    """A known_hosts file nixify writes from pinned keys (derived: never edited)."""
    return Path(path).parent == state_dir() / "known_hosts" or Path(path).name.startswith(
        "pinned-"
    )


def _replace_map_key(text: str, name: str, key: str, where: str) -> str | None:
    """The address map's text with ``name``'s ``host_key`` replaced by ``key`` (the
    old key's text swapped, so comments and layout stay); None when the entry
    pins no ``host_key`` or already pins ``key``."""
    doc = yaml.safe_load(text) or {}
    entry = doc.get(name) if isinstance(doc, Mapping) else None
    old = entry.get("host_key") if isinstance(entry, Mapping) else None
    if not isinstance(old, str):
        return None
    old_key = canonical_key(old, f"{where}: host {name!r}: field 'host_key'")
    if old_key == key:
        return None
    if text.count(old_key.split()[1]) != 1:
        raise ConfigError(f"{where}: host {name!r}: its host_key appears more than once")
    return text.replace(old_key.split()[1], key.split()[1])


def update_address_map(
    path: Path, name: str, key: str, identity_files: Sequence[Path] = ()
) -> str | None:
    """Pin ``key`` as ``name``'s ``host_key`` in the address map (a sops-encrypted map is
    re-encrypted with its own data key, in memory); a line saying what changed, or None."""
    raw = path.read_text()
    doc = yaml.safe_load(raw)
    if not (isinstance(doc, Mapping) and "sops" in doc):
        new = _replace_map_key(raw, name, key, str(path))
        if new is None:
            return None
        atomic_write(path, new.encode())
        return f"{path}: host_key of {name} updated"
    sf = SopsFile.load(path)
    ids = [i.identity for f in identity_files for i in identities_from_file(f)]
    if not ids:
        ids = [i.identity for i in find_identities()]
    try:
        data_key = sf.data_key(ids)
        before = sf.plaintext(ids)
    except SopsError as exc:
        raise ConfigError(f"{path}: cannot open the address map to update it: {exc}") from None
    after = _replace_map_key(before, name, key, str(path))
    if after is None:
        return None
    text = encrypt_tree(parse_plaintext(after, path), sf.fmt, sf.recipients, sf.rules,
                        data_key=data_key)
    SopsFile.parse(text, sf.fmt, str(path))
    atomic_write(path, text.encode())
    return f"{path}: host_key of {name} updated (re-encrypted, same recipients)"


def update_builders(
    host: str,
    key: str,
    hosts: Mapping[str, HostData],
    transport: Callable[[str, HostData], SshTransport] | None = None,
) -> list[Step]:
    """Pin ``key`` for ``host`` in every builder's ``/root/.ssh/known_hosts``, in
    parallel; one step per builder (unreachable or failed ones not ok)."""
    make = transport or (lambda n, d: SshTransport(n, ssh_args_from_data(n, d)))
    target = hosts[host]
    pattern = host_pattern(*_where(target, host))
    names = [host, pattern]
    builders = sorted(n for n, d in hosts.items() if d.get("role") in BUILDER_ROLES)

    def one(builder: str) -> Step:
        try:
            t = make(builder, hosts[builder])
            text = (t.read_file(BUILDER_KNOWN_HOSTS, timeout=30) or b"").decode()
            new = replace_host_key(text, names, key, pattern)
            if new == text:
                return Step(f"{builder}: {BUILDER_KNOWN_HOSTS} already pins {host}'s key")
            t.write_file(BUILDER_KNOWN_HOSTS, new.encode(), mode=0o644, timeout=30)
            return Step(f"{builder}: {BUILDER_KNOWN_HOSTS} updated for {host}")
        except HostUnreachable as exc:
            return Step(f"{builder}: not updated: did not answer ({exc.reason.strip()[:120]})",
                        ok=False)
        except CommandFailed as exc:
            return Step(f"{builder}: not updated: {str(exc).strip()[:160]}", ok=False)

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(builders)))) as pool:
        return list(pool.map(one, builders))
