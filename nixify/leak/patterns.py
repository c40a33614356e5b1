"""What the leak gate looks for, and how a raw match is confirmed.

Each kind has one regular expression over bytes. The expressions are built
from parts so that this file, which describes the patterns, is not itself a
finding (the scanner runs on its own repository). A raw regex match is only a
candidate: ``confirm`` applies the checks a regex cannot express cheaply
(an IPv4 address must stand alone, its octets must be bytes, it must fall in
a private or Tailscale range).

Kinds:

``private-ipv4``
    An address in one of the three RFC 1918 blocks.
``tailscale-ipv4``
    An address in the carrier-grade NAT block Tailscale hands out (the /10 that
    starts at one hundred dot sixty-four).
``tailscale-ipv6``
    An address under Tailscale's unique-local /48.
``age-recipient`` / ``age-identity``
    Bech32 age public keys (X25519 and plugin) and secret keys.
``ssh-public-key``
    The base64 blob of an SSH public key or certificate (ed25519, RSA, DSA,
    ECDSA, and the security-key ``sk-`` types), recognised by its encoded key-type header, so
    a blob is caught with or without the type word in front of it.
``private-key``
    A PEM or OpenSSH private-key armour header (OpenSSH, RSA, EC, DSA, PKCS#8,
    encrypted PKCS#8, and OpenPGP secret-key blocks).

An IPv4 candidate "stands alone" when it is not glued to a longer dotted
number or word: the byte before it is not a digit, a letter or a dot, and it is
not followed by a digit or by a dot and a digit. So a public address whose
first octet merely ends in the right digits, a five-part dotted number and a
``v``-prefixed version string are not findings.
"""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass

IPV4_PRIVATE = "private-ipv4"
IPV4_TAILSCALE = "tailscale-ipv4"
IPV6_TAILSCALE = "tailscale-ipv6"
AGE_RECIPIENT = "age-recipient"
AGE_IDENTITY = "age-identity"
SSH_PUBLIC_KEY = "ssh-public-key"
PRIVATE_KEY = "private-key"

KINDS: tuple[str, ...] = (
    IPV4_PRIVATE,
    IPV4_TAILSCALE,
    IPV6_TAILSCALE,
    AGE_RECIPIENT,
    AGE_IDENTITY,
    SSH_PUBLIC_KEY,
    PRIVATE_KEY,
)

# Bech32's data alphabet (no 1, b, i, o).
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_LOWER = "[" + "".join(sorted(BECH32)) + "]"
_BECH32_UPPER = "[" + "".join(sorted(BECH32.upper())) + "]"

_AGE_HRP = "age"
_AGE_SECRET_HRP = "-".join([_AGE_HRP.upper(), "SECRET", "KEY", ""])
_AGE_PLUGIN_HRP = "-".join([_AGE_HRP.upper(), "PLUGIN", ""])

# SSH key types whose wire-format blobs we recognise by their encoded header.
SSH_KEY_TYPES: tuple[str, ...] = (
    "ssh-" + "ed25519",
    "ssh-" + "rsa",
    "ssh-" + "dss",
    "ecdsa-sha2-" + "nistp256",
    "ecdsa-sha2-" + "nistp384",
    "ecdsa-sha2-" + "nistp521",
    "sk-" + "ssh-ed25519@openssh.com",
    "sk-" + "ecdsa-sha2-nistp256@openssh.com",
    # Certificates carry the public key too.
    "ssh-" + "ed25519-cert-v01@openssh.com",
    "ssh-" + "rsa-cert-v01@openssh.com",
    "ecdsa-sha2-" + "nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-" + "nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-" + "nistp521-cert-v01@openssh.com",
    "sk-" + "ssh-ed25519-cert-v01@openssh.com",
)


def ssh_blob_prefix(key_type: str) -> str:
    """The base64 text every public-key blob of ``key_type`` starts with.

    A blob begins with the key type as an SSH string (4-byte big-endian length,
    then the name); only whole 3-byte groups encode to fixed characters.
    """
    header = struct.pack(">I", len(key_type)) + key_type.encode()
    whole = len(header) - len(header) % 3
    return base64.b64encode(header[:whole]).decode()


_PEM_DASHES = "-" * 5
_PRIVATE_KEY_WORDS = "PRIVATE" + " KEY"
_PEM_KINDS = ("OPENSSH ", "RSA ", "EC ", "DSA ", "ENCRYPTED ", "")
# Byte strings that must occur in a file for the matching kind to be possible:
# the scanner checks them with a fast substring search before running a regex.

# Every block starts with a 1: the literal first byte keeps the regex engine's
# fast prefix scan; the look-behind after it rejects a longer number or word.
_OCTET = rb"[0-9]{1,3}"
_IPV4 = (
    rb"1(?<![0-9A-Za-z.]1)(?:0\." + _OCTET
    + rb"|72\.(?:1[6-9]|2[0-9]|3[01])|92\.168|00\.(?:6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7]))"
    + rb"\." + _OCTET + rb"\." + _OCTET + rb"(?![0-9]|\.[0-9])"
)
_IPV6 = (
    rb"(?i:f" + rb"d7a:115c:a1e" + rb"0)(?::[0-9A-Fa-f]{0,4}){1,5}(?![0-9A-Za-z:])"
)
_AGE_RECIPIENT = (
    _AGE_HRP.encode() + b"1" + _BECH32_LOWER.encode() + rb"{58,}(?![0-9A-Za-z])"
)
_AGE_IDENTITY = (
    rb"(?:" + _AGE_SECRET_HRP.encode() + rb"|" + _AGE_PLUGIN_HRP.encode()
    + rb"[A-Z0-9-]+-)1" + _BECH32_UPPER.encode() + rb"{50,}"
)
_SSH_BLOB = (
    rb"(?:" + b"|".join(re.escape(ssh_blob_prefix(t).encode()) for t in SSH_KEY_TYPES)
    + rb")[A-Za-z0-9+/]{8,}={0,3}"
)
_PRIVATE_KEY = (
    _PEM_DASHES.encode() + rb"BEGIN (?:(?:" + b"|".join(k.encode() for k in _PEM_KINDS if k)
    + rb")?" + _PRIVATE_KEY_WORDS.encode() + rb"|PGP " + _PRIVATE_KEY_WORDS.encode()
    + rb" BLOCK)" + _PEM_DASHES.encode()
)


# Every blob starts with the encoded 4-byte length of its type name, "AAAA";
# upper-case runs are rare in text, so that needle is the cheapest search.
_SSH_ANCHOR = b"A" * 4
assert all(ssh_blob_prefix(k).startswith(_SSH_ANCHOR.decode()) for k in SSH_KEY_TYPES)


@dataclass(frozen=True)
class Pattern:
    """One kind's expression and the literals one of which must be present."""

    kinds: tuple[str, ...]
    regex: re.Pattern[bytes]
    triggers: tuple[bytes, ...]
    # When set, the regex is only tried at each occurrence of triggers[0] minus
    # this many bytes (for an expression with no literal prefix of its own).
    anchor_back: int | None = None


PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        (IPV4_PRIVATE, IPV4_TAILSCALE),
        re.compile(_IPV4),
        (b"10.", b"100.", b"172.", b"192."),
    ),
    # The second group's digits are case-free: one search covers every spelling.
    Pattern((IPV6_TAILSCALE,), re.compile(_IPV6), (b":115",), anchor_back=4),
    Pattern((AGE_RECIPIENT,), re.compile(_AGE_RECIPIENT), (_AGE_HRP.encode() + b"1",)),
    Pattern(
        (AGE_IDENTITY,),
        re.compile(_AGE_IDENTITY),
        (_AGE_SECRET_HRP.encode(), _AGE_PLUGIN_HRP.encode()),
    ),
    Pattern((SSH_PUBLIC_KEY,), re.compile(_SSH_BLOB), (_SSH_ANCHOR,), anchor_back=0),
    Pattern((PRIVATE_KEY,), re.compile(_PRIVATE_KEY), (_PEM_DASHES.encode() + b"BEGIN",)),
)

# One expression for tools that take a single pattern (the ripgrep baseline).
COMBINED_SOURCE: bytes = b"|".join(b"(?:" + p.regex.pattern + b")" for p in PATTERNS)


def _ipv4_kind(text: bytes) -> str | None:
    try:
        octets = [int(part) for part in text.split(b".")]
    except ValueError:
        return None
    if len(octets) != 4 or any(o > 255 for o in octets):
        return None
    a, b = octets[0], octets[1]
    if a == 10 or (a == 172 and 16 <= b <= 31) or (a == 192 and b == 168):
        return IPV4_PRIVATE
    if a == 100 and 64 <= b <= 127:
        return IPV4_TAILSCALE
    return None


def _glued_before(data: bytes, start: int) -> bool:
    if start == 0:
        return False
    prev = data[start - 1 : start]
    return prev.isalnum() or prev == b"."


def confirm(pattern: Pattern, data: bytes, match: re.Match[bytes]) -> str | None:
    """The kind of a raw match, or None when the match is not a finding."""
    kind = pattern.kinds[0]
    start = match.start()
    if kind == IPV4_PRIVATE:
        if _glued_before(data, start):
            return None
        return _ipv4_kind(match.group())
    prev = data[start - 1 : start]
    if kind != PRIVATE_KEY and (prev.isalnum() or (kind == IPV6_TAILSCALE and prev == b":")):
        return None
    return kind
