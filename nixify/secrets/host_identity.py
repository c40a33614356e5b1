#!/usr/bin/env python3
"""Print the age identity of an unencrypted OpenSSH ed25519 private key.

Standard library only, no nixify imports: the install uploads this file to a
host and sops runs it there (``SOPS_AGE_KEY_CMD``) to turn the host's own
``/etc/ssh/ssh_host_ed25519_key`` into the X25519 identity its secrets are
encrypted to. The identity goes to stdout (sops's pipe) and nowhere else.

    python3 host_identity.py /etc/ssh/ssh_host_ed25519_key
"""

from __future__ import annotations

import base64
import hashlib
import struct
import sys

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_MAGIC = b"openssh-key-v1\0"


def _bech32(hrp: str, data: bytes) -> str:
    acc = bits = 0
    five = []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            five.append((acc >> bits) & 31)
    if bits:
        five.append((acc << (5 - bits)) & 31)
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + five + [0] * 6
    chk = 1
    for v in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ v
        for i, g in enumerate(_GEN):
            if (top >> i) & 1:
                chk ^= g
    chk ^= 1
    checksum = [(chk >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in five + checksum)


def _string(buf: bytes, off: int) -> tuple[bytes, int]:
    (n,) = struct.unpack(">I", buf[off : off + 4])
    end = off + 4 + n
    if end > len(buf):
        raise ValueError("truncated key")
    return buf[off + 4 : end], end


def seed_of(pem: str) -> bytes:
    """The 32-byte ed25519 seed of an unencrypted OpenSSH private key."""
    lines = [ln.strip() for ln in pem.strip().splitlines()]
    if not lines or lines[0] != "-----BEGIN OPENSSH PRIVATE KEY-----":
        raise ValueError("not an OpenSSH private key")
    blob = base64.b64decode("".join(lines[1:-1]))
    if not blob.startswith(_MAGIC):
        raise ValueError("not an openssh-key-v1 key")
    off = len(_MAGIC)
    cipher, off = _string(blob, off)
    _kdf, off = _string(blob, off)
    _kdfopts, off = _string(blob, off)
    if cipher != b"none":
        raise ValueError("the key is passphrase-protected")
    (count,) = struct.unpack(">I", blob[off : off + 4])
    off += 4
    for _ in range(count):
        _pub, off = _string(blob, off)
    private, _ = _string(blob, off)
    c1, c2 = struct.unpack(">II", private[:8])
    if c1 != c2:
        raise ValueError("corrupt private section")
    kind, p = _string(private, 8)
    if kind != b"ssh-ed25519":
        raise ValueError(f"not an ed25519 key ({kind.decode(errors='replace')})")
    _pub, p = _string(private, p)
    secret, p = _string(private, p)
    if len(secret) != 64:
        raise ValueError("bad ed25519 private key length")
    return secret[:32]


def identity_of(pem: str) -> str:
    return _bech32("age-secret-key-", hashlib.sha512(seed_of(pem)).digest()[:32]).upper()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: host_identity.py PRIVATE_KEY", file=sys.stderr)
        return 2
    try:
        with open(argv[1]) as fh:
            print(identity_of(fh.read()))
    except (OSError, ValueError) as exc:
        print(f"host_identity: {argv[1]}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
