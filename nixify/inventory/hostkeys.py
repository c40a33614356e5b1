"""SSH host keys: pinned known-hosts files, and the key a host presents now.

A pinned host key is a ``TYPE BASE64`` pair. ``known_hosts`` text is read and
written here as OpenSSH does: a line is ``[marker] hostnames key [comment]``,
hostnames comma-separated, each a name, an address, ``[address]:port`` for a
port other than 22, or a hashed ``|1|salt|hmac`` form (``HashKnownHosts``).
``scan_host_key`` asks a host, without logging in, which key it presents
(``ssh-keyscan``): the live key a check compares with the pinned one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nixify.errors import ConfigError
from nixify.util import atomic_write

KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
STATE_ENV = "NIXIFY_STATE_DIR"
SCAN_TIMEOUT = 3


def canonical_key(line: str, where: str) -> str:
    """``TYPE BASE64`` of a public key line (a comment is dropped); ConfigError naming
    ``where`` when it is not one."""
    parts = line.split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise ConfigError(f"{where}: not an SSH public key ('ssh-ed25519 AAAA...'): {line!r}")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: the key is not base64: {parts[1][:24]!r}") from None
    kind = blob[4 : 4 + int.from_bytes(blob[:4], "big")] if len(blob) > 4 else b""
    if kind != parts[0].encode():
        raise ConfigError(f"{where}: the key's blob is not a {parts[0]} key")
    return f"{parts[0]} {parts[1]}"


def fingerprint(key: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a ``TYPE BASE64`` key."""
    digest = hashlib.sha256(base64.b64decode(key.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def host_pattern(address: str, port: int) -> str:
    """How ``known_hosts`` names a host reached at ``address``:``port``."""
    return address if port == 22 else f"[{address}]:{port}"


def _name_matches(field: str, name: str) -> bool:
    if field.startswith("|1|"):
        try:
            _, _, salt, digest = field.split("|")
            mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(mac, base64.b64decode(digest))
        except (ValueError, binascii.Error):
            return False
    return field == name


@dataclass(frozen=True)
class KnownHostsLine:
    """One entry of a known_hosts file (None fields: a comment, blank or marker line)."""

    text: str
    hostnames: tuple[str, ...] = ()
    key: str | None = None

    def names_any(self, names: Iterable[str]) -> bool:
        return any(_name_matches(f, n) for f in self.hostnames for n in names)


def parse_known_hosts(text: str) -> list[KnownHostsLine]:
    out = []
    for raw in text.splitlines():
        parts = raw.split()
        # comments, blank lines and @cert-authority / @revoked lines are kept as they are
        if not parts or parts[0].startswith(("#", "@")) or len(parts) < 3:
            out.append(KnownHostsLine(raw))
            continue
        out.append(KnownHostsLine(raw, tuple(parts[0].split(",")), f"{parts[1]} {parts[2]}"))
    return out


def pinned_keys(text: str, names: Iterable[str]) -> list[str]:
    """The keys ``text`` (a known_hosts file) pins for any of ``names``."""
    names = list(names)
    return [ln.key for ln in parse_known_hosts(text) if ln.key and ln.names_any(names)]


def render_known_hosts(pins: Mapping[str, str]) -> str:
    """known_hosts text: one ``PATTERN KEY`` line per pinned pattern, sorted."""
    return "".join(f"{pattern} {key}\n" for pattern, key in sorted(pins.items()))


def state_dir() -> Path:
    """Where nixify keeps files it derives (``$NIXIFY_STATE_DIR``, else
    ``$XDG_STATE_HOME/nixify``, else ``~/.local/state/nixify``)."""
    env = os.environ.get(STATE_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "nixify"


def write_pinned_known_hosts(pins: Mapping[str, str], directory: Path | None = None) -> Path:
    """A known_hosts file holding exactly ``pins`` (pattern -> key). Its name is its
    content's digest, so a file once written never changes under a running deploy."""
    text = render_known_hosts(pins)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = (directory or state_dir()) / "known_hosts" / f"pinned-{digest}"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, text.encode(), mode=0o644)
    return path


def replace_host_key(text: str, names: Iterable[str], key: str, pattern: str) -> str:
    """``text`` (known_hosts) with every entry for any of ``names`` pinned to ``key``:
    an entry's key is replaced (its host names, hashed or not, are kept); entries of
    another key type for those names are dropped (a reinstalled host has new keys of
    every type); with no entry at all, ``PATTERN KEY`` is added."""
    names = list(names)
    kind = key.split()[0]
    lines: list[str] = []
    found = False
    for ln in parse_known_hosts(text):
        if ln.key is None or not ln.names_any(names):
            lines.append(ln.text)
            continue
        if ln.key.split()[0] != kind:
            continue
        found = True
        fields = ln.text.split()
        new = " ".join([fields[0], key, *fields[3:]])
        if new not in lines:
            lines.append(new)
    if not found:
        lines.append(f"{pattern} {key}")
    return "".join(f"{line}\n" for line in lines)


@dataclass(frozen=True)
class ScannedKey:
    """What a host presented: its key, or why none was read."""

    key: str | None
    error: str = ""


def scan_host_key(address: str, port: int, timeout: int = SCAN_TIMEOUT) -> ScannedKey:
    """The ed25519 host key ``address``:``port`` presents now (no login: the key
    exchange only, ``ssh-keyscan``); ``key`` None when the host did not answer."""
    argv = ["ssh-keyscan", "-T", str(timeout), "-t", "ed25519", "-p", str(port), address]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + 5, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return ScannedKey(None, f"no answer within {timeout}s")
    except OSError as exc:
        return ScannedKey(None, f"cannot run ssh-keyscan: {exc.strerror}")
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "ssh-ed25519":
            return ScannedKey(f"{parts[1]} {parts[2]}")
    why = " ".join(ln for ln in proc.stderr.splitlines() if not ln.startswith("#")).strip()
    return ScannedKey(None, f"no answer within {timeout}s" + (f" ({why})" if why else ""))
