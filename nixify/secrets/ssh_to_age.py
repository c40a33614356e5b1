"""SSH ed25519 host keys as age keys, the conversion sops-nix relies on.

* public: the ed25519 point's Edwards ``y`` becomes the Montgomery ``u =
  (1 + y) / (1 - y) mod p``, bech32-encoded under ``age``: an ``age1...``
  X25519 recipient.
* private: the first 32 bytes of ``sha512(seed)`` (the clamped-later X25519
  scalar of the same key), bech32 under ``age-secret-key-``, upper-cased.

Lines are read as ``authorized_keys`` / ``known_hosts`` / ``ssh-keyscan`` lines:
the first ``ssh-ed25519 <base64>`` pair on a line is used; lines without one
(RSA, ECDSA, comments) are skipped, as ssh-to-age skips them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_ssh_private_key

from nixify.errors import ConfigError
from nixify.secrets import bech32

_P = 2**255 - 19
ED25519 = "ssh-ed25519"
PASSPHRASE_ENV = "SSH_TO_AGE_PASSPHRASE"


@dataclass(frozen=True)
class SshPublicKey:
    """One ed25519 public key read from a line (``blob`` is the 32-byte key)."""

    key: bytes
    comment: str = ""

    @property
    def openssh(self) -> str:
        wire = _ssh_string(ED25519.encode()) + _ssh_string(self.key)
        return f"{ED25519} {base64.b64encode(wire).decode()}"

    @property
    def age_recipient(self) -> str:
        return ed25519_public_to_age(self.key)


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_ssh_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(blob):
        raise ValueError("truncated key blob")
    (length,) = struct.unpack(">I", blob[offset : offset + 4])
    end = offset + 4 + length
    if end > len(blob):
        raise ValueError("truncated key blob")
    return blob[offset + 4 : end], end


def ed25519_public_to_age(key: bytes) -> str:
    """The ``age1...`` recipient of a raw 32-byte ed25519 public key."""
    if len(key) != 32:
        raise ConfigError(f"ed25519 public key must be 32 bytes, got {len(key)}")
    y = int.from_bytes(key, "little") & ((1 << 255) - 1)
    if y >= _P:
        raise ConfigError("ed25519 public key is not a canonical point encoding")
    denominator = (1 - y) % _P
    if denominator == 0:
        raise ConfigError("ed25519 public key is the identity point; no X25519 key")
    u = (1 + y) * pow(denominator, _P - 2, _P) % _P
    return bech32.encode("age", u.to_bytes(32, "little"))


def ed25519_seed_to_age_identity(seed: bytes) -> str:
    """The ``AGE-SECRET-KEY-1...`` identity of a 32-byte ed25519 private seed."""
    if len(seed) != 32:
        raise ConfigError(f"ed25519 seed must be 32 bytes, got {len(seed)}")
    scalar = hashlib.sha512(seed).digest()[:32]
    return bech32.encode("age-secret-key-", scalar).upper()


def parse_public_line(line: str) -> SshPublicKey | None:
    """The ed25519 key of one authorized_keys/known_hosts/keyscan line, or None.

    ConfigError when the line names ``ssh-ed25519`` but its blob is not one.
    """
    tokens = line.strip().split()
    if not tokens or tokens[0].startswith("#"):
        return None
    for i, token in enumerate(tokens[:-1]):
        if token != ED25519:
            continue
        try:
            blob = base64.b64decode(tokens[i + 1], validate=True)
            kind, offset = _read_ssh_string(blob, 0)
            key, offset = _read_ssh_string(blob, offset)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"malformed ssh-ed25519 key blob: {exc}") from exc
        if kind != ED25519.encode() or len(key) != 32 or offset != len(blob):
            raise ConfigError("ssh-ed25519 line whose blob is not an ed25519 key")
        return SshPublicKey(key, " ".join(tokens[i + 2 :]))
    return None


def public_keys_from_text(text: str) -> list[SshPublicKey]:
    """Every ed25519 key in ``text``, one per line; other lines are skipped."""
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            key = parse_public_line(line)
        except ConfigError as exc:
            raise ConfigError(f"line {number}: {exc}") from exc
        if key is not None:
            keys.append(key)
    return keys


def age_recipients_from_text(text: str) -> list[str]:
    """``age1...`` recipients of every ed25519 key line in ``text``."""
    return [key.age_recipient for key in public_keys_from_text(text)]


def recipient_of_public_line(line: str, where: str = "") -> str:
    """The recipient of a single ``ssh-ed25519 ...`` line; ConfigError otherwise."""
    label = f"{where}: " if where else ""
    try:
        key = parse_public_line(line)
    except ConfigError as exc:
        raise ConfigError(f"{label}{exc}") from exc
    if key is None:
        kind = line.split()[0] if line.split() else "empty"
        raise ConfigError(
            f"{label}host key is not ssh-ed25519 ({kind!r}); only ed25519 host keys "
            "convert to age recipients"
        )
    return key.age_recipient


def private_key_to_age_identity(
    data: bytes, passphrase: bytes | None = None, where: str = "private key"
) -> str:
    """The age identity of an OpenSSH ed25519 private key file's contents.

    ``passphrase`` defaults to ``$SSH_TO_AGE_PASSPHRASE``; an encrypted key without
    one, a wrong passphrase or a non-ed25519 key is a ConfigError naming ``where``.
    """
    if passphrase is None and os.environ.get(PASSPHRASE_ENV):
        passphrase = os.environ[PASSPHRASE_ENV].encode()
    try:
        key = load_ssh_private_key(data, password=passphrase)
    except TypeError as exc:
        raise ConfigError(
            f"{where}: the key is passphrase-protected; pass the passphrase in "
            f"${PASSPHRASE_ENV} (or --passphrase-env)"
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"{where}: cannot read OpenSSH private key: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{where}: not an ed25519 key ({type(key).__name__})")
    return ed25519_seed_to_age_identity(key.private_bytes_raw())


def convert_public(lines: Iterable[str]) -> list[str]:
    """Recipients for all ed25519 lines among ``lines`` (ssh-to-age's default mode)."""
    return age_recipients_from_text("\n".join(lines))
