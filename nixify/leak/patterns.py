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
``private-ipv6``
    Any other IPv6 unique-local address (the /7 whose first group starts with
    ``fc`` or ``fd``). The block names themselves (the first group then ``::``
    and nothing else, as in a ``/7`` or ``/8`` range) are not findings.
``link-local-ipv6``
    An IPv6 link-local address (the /10 whose first group is ``fe80`` to
    ``febf``), with or without a zone; the bare block name is not a finding.
``age-recipient`` / ``age-identity``
    Bech32 age public keys (X25519 and plugin) and secret keys.
``ssh-public-key``
    The base64 blob of an SSH public key or certificate (ed25519, RSA, DSA,
    ECDSA, and the security-key ``sk-`` types), recognised by its encoded key-type header, so
    a blob is caught with or without the type word in front of it.
``private-key``
    A PEM or OpenSSH private-key armour header (OpenSSH, RSA, EC, DSA, PKCS#8,
    encrypted PKCS#8, and OpenPGP secret-key blocks).
``nix-cache-secret-key``
    A Nix binary-cache signing key as ``nix-store --generate-binary-cache-key``
    writes it: ``name:`` and the base64 of 64 bytes, an Ed25519 seed followed by
    its public key. The pair is checked, so a public key (``name:`` and 32
    bytes, fine to publish) and other 64-byte base64 values (a sops ``data:``
    ciphertext, a hash) are not findings.
``wireguard-private-key``
    A WireGuard private or preshared key (base64 of 32 bytes) as the value of
    ``PrivateKey``/``PresharedKey`` (wg-quick, systemd-networkd) or
    ``privateKey``/``private_key`` (NixOS, YAML); public keys are not findings.

An IPv4 candidate "stands alone" when it is not glued to a longer dotted
number or word: the byte before it is not a digit, a letter or a dot, and it is
not followed by a digit or by a dot and a digit. So a public address whose
first octet merely ends in the right digits, a five-part dotted number and a
``v``-prefixed version string are not findings.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

IPV4_PRIVATE = "private-ipv4"
IPV4_TAILSCALE = "tailscale-ipv4"
IPV6_TAILSCALE = "tailscale-ipv6"
IPV6_PRIVATE = "private-ipv6"
IPV6_LINK_LOCAL = "link-local-ipv6"
AGE_RECIPIENT = "age-recipient"
AGE_IDENTITY = "age-identity"
SSH_PUBLIC_KEY = "ssh-public-key"
PRIVATE_KEY = "private-key"
NIX_CACHE_SECRET_KEY = "nix-cache-secret-key"
WIREGUARD_KEY = "wireguard-private-key"

KINDS: tuple[str, ...] = (
    IPV4_PRIVATE,
    IPV4_TAILSCALE,
    IPV6_TAILSCALE,
    AGE_RECIPIENT,
    AGE_IDENTITY,
    SSH_PUBLIC_KEY,
    PRIVATE_KEY,
    IPV6_PRIVATE,
    IPV6_LINK_LOCAL,
    NIX_CACHE_SECRET_KEY,
    WIREGUARD_KEY,
)

# Kinds whose value is a secret: their redaction shows none of it.
SECRET_KINDS: frozenset[str] = frozenset({NIX_CACHE_SECRET_KEY, WIREGUARD_KEY})

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


# Unique-local (fc/fd) and link-local (fe8-feb) first groups, then the rest of
# an IPv6 address; ``ipaddress`` decides whether the candidate really is one.
_HEX = rb"[0-9A-Fa-f]"
_ULA_LL_GROUP = rb"(?i:f[cd]" + _HEX + rb"{2}|fe[89ab]" + _HEX + rb")"
_IPV6_LOCAL = (
    _ULA_LL_GROUP + rb"(?:(?:::?" + _HEX + rb"{1,4}){1,7}(?:::)?|::)(?![0-9A-Za-z])"
)
# The scan looks for the colon after a first group (a fast literal search in C,
# with a fixed-width look-behind), then tries the address four bytes back.
_IPV6_LOCAL_FINDER = rb":(?<=" + _ULA_LL_GROUP + rb":)"
# Nix cache keys: name, colon, base64. A secret key is 64 bytes (86 characters
# and "=="); the finder looks for the padding and checks the rest behind it.
# Padding ends base64, so a "/" after it is not part of the value (a URL path).
_NIX_NAME = rb"[A-Za-z0-9._+@-]"
_B64 = rb"[A-Za-z0-9+/]"
_NIX_SECRET = (
    _NIX_NAME + rb"{1,255}:" + _B64 + rb"{86}==(?![A-Za-z0-9+=])"
)
_NIX_SECRET_FINDER = rb"==(?<=:" + _B64 + rb"{86}==)(?![A-Za-z0-9+=])"
# WireGuard: 32 bytes are 43 characters and "=", the last one with its two low
# bits zero. The key is the match's "v" group; the setting name is context.
_WG_NAME = rb"(?:[Pp]rivate|PRIVATE|[Pp]reshared|PRESHARED)[_-]?(?:[Kk]ey|KEY)"
_WG_KEY = _B64 + rb"{42}[AEIMQUYcgkosw048]="
_WIREGUARD = (
    _WG_NAME + rb"""["']?[ \t]*[=:][ \t]*["']?(?P<v>""" + _WG_KEY + rb")(?![A-Za-z0-9+=])"
)
# The finder looks for the padding "=" with a key's 43 characters behind it
# (one search for a common byte, checked in C); the name is found backwards.
_WIREGUARD_FINDER = rb"=(?<=[^A-Za-z0-9+/]" + _WG_KEY + rb")(?![A-Za-z0-9+=])"
_WG_NAME_AT_END = re.compile(_WG_NAME + rb"""["']?\Z""")

# Every blob starts with the encoded 4-byte length of its type name, "AAAA";
# upper-case runs are rare in text, so that needle is the cheapest search.
_SSH_ANCHOR = b"A" * 4
assert all(ssh_blob_prefix(k).startswith(_SSH_ANCHOR.decode()) for k in SSH_KEY_TYPES)


@dataclass(frozen=True)
class Pattern:
    """One kind's expression and how its candidates are found.

    By default the regex runs over the data when one of the trigger literals
    occurs in it (a fast substring search). With ``anchor_back`` it is only
    tried at each occurrence of ``triggers[0]`` (or of a ``finder`` match)
    minus this many bytes, for an expression with no literal prefix of its own.
    A regex with a group named ``v`` reports that group's span as the finding.
    """

    kinds: tuple[str, ...]
    regex: re.Pattern[bytes]
    triggers: tuple[bytes, ...]
    anchor_back: int | None = None
    finder: re.Pattern[bytes] | None = None
    # Where a match found at an anchor really starts (the Nix key's name).
    start_of: Callable[[bytes, int], int] | None = None
    # The expression for COMBINED_SOURCE when the regex's own is slow as one
    # branch of a big alternation (one match per finding all the same).
    baseline: bytes | None = None


def _nix_name_start(data: bytes, colon: int) -> int:
    i = colon
    while i > 0 and colon - i < 255 and data[i - 1 : i] in _NIX_NAME_BYTES:
        i -= 1
    return i


def _wireguard_name_start(data: bytes, key: int) -> int:
    """Where the setting name before the key at ``key`` starts (``key`` if there is none)."""
    i = key
    if data[i - 1 : i] in (b'"', b"'"):
        i -= 1
    while data[i - 1 : i] in (b" ", b"\t"):
        i -= 1
    if data[i - 1 : i] not in (b"=", b":"):
        return key
    i -= 1
    while data[i - 1 : i] in (b" ", b"\t"):
        i -= 1
    m = _WG_NAME_AT_END.search(data, max(0, i - 16), i)
    return m.start() if m is not None else key


_NIX_NAME_BYTES = frozenset(
    bytes([c]) for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+@-"
)


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
    Pattern(
        (IPV6_PRIVATE, IPV6_LINK_LOCAL),
        re.compile(_IPV6_LOCAL),
        (b":",),
        anchor_back=4,
        finder=re.compile(_IPV6_LOCAL_FINDER),
    ),
    Pattern(
        (NIX_CACHE_SECRET_KEY,),
        re.compile(_NIX_SECRET),
        (b"==",),
        anchor_back=87,
        finder=re.compile(_NIX_SECRET_FINDER),
        start_of=_nix_name_start,
        baseline=_NIX_SECRET[len(_NIX_NAME) + len(b"{1,255}") :],
    ),
    Pattern(
        (WIREGUARD_KEY,),
        re.compile(_WIREGUARD),
        (b"=",),
        anchor_back=43,
        finder=re.compile(_WIREGUARD_FINDER),
        start_of=_wireguard_name_start,
    ),
)

# One expression for tools that take a single pattern (the ripgrep baseline).
COMBINED_SOURCE: bytes = b"|".join(
    b"(?:" + (p.baseline or p.regex.pattern).replace(b"(?P<v>", b"(?:") + b")"
    for p in PATTERNS
)


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


_ULA = ipaddress.IPv6Network("fc00::/7")
_LINK_LOCAL = ipaddress.IPv6Network("fe80::/10")
_TAILSCALE6 = ipaddress.IPv6Network(":".join(["fd7a", "115c", "a1e0", ":/48"]))
# The blocks' own names (``fc00::``, ``fd00::``, ``fe80::``) are not addresses.
_BLOCK_NAMES = frozenset(
    ipaddress.IPv6Address(a) for a in ("fc00::", "fd00::", "fe80::")
)


def _ipv6_local_kind(text: bytes) -> str | None:
    try:
        addr = ipaddress.IPv6Address(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    if addr in _BLOCK_NAMES or addr in _TAILSCALE6:
        return None  # a block's name; or the tailscale-ipv6 kind's
    if addr in _LINK_LOCAL:
        return IPV6_LINK_LOCAL
    if addr in _ULA:
        return IPV6_PRIVATE
    return None


def _is_nix_secret_key(text: bytes) -> bool:
    """``name:base64`` whose 64 bytes are an Ed25519 seed and its own public key."""
    name, _, b64 = text.rpartition(b":")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    if not name or len(raw) != 64:
        return False
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = Ed25519PrivateKey.from_private_bytes(raw[:32]).public_key().public_bytes_raw()
    return public == raw[32:]


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
    if kind == IPV6_PRIVATE:
        if prev.isalnum() or prev in (b":", b"_"):
            return None
        return _ipv6_local_kind(match.group())
    if kind == NIX_CACHE_SECRET_KEY:
        return kind if _is_nix_secret_key(match.group()) else None
    if kind == WIREGUARD_KEY:
        return kind  # the setting name in front is the context, glued or not
    if kind != PRIVATE_KEY and (prev.isalnum() or (kind == IPV6_TAILSCALE and prev == b":")):
        return None
    return kind


ANCHOR_HITS_BEFORE_FALLBACK = 256


def _anchor_hits(pattern: Pattern, data: bytes, pos: int) -> Iterator[int]:
    if pattern.finder is not None:
        for m in pattern.finder.finditer(data, pos):
            yield m.start()
        return
    anchor = pattern.triggers[0]
    hit = data.find(anchor, pos)
    while hit != -1:
        yield hit
        hit = data.find(anchor, hit + 1)


def _anchored(pattern: Pattern, data: bytes) -> Iterator[re.Match[bytes]]:
    """Matches of ``pattern`` tried only where its anchor occurs.

    Many anchor hits (a run of the literal, say) would make the Python loop
    slow; past a few hundred, the regex's own scan takes over from there
    (an expression with a finder filters its hits in C, so it never needs to).
    """
    back = pattern.anchor_back or 0
    hits = 0
    last_end = 0
    for hit in _anchor_hits(pattern, data, 0):
        hits += 1
        if pattern.finder is None and hits > ANCHOR_HITS_BEFORE_FALLBACK:
            yield from pattern.regex.finditer(data, max(last_end, hit - back))
            return
        at = hit - back
        if at < 0:
            continue
        if pattern.start_of is not None:
            at = pattern.start_of(data, at)
        if at >= last_end:
            m = pattern.regex.match(data, at)
            if m is not None:
                last_end = m.end()
                yield m


def candidates(data: bytes) -> Iterator[tuple[int, int, str]]:
    """Every confirmed match in ``data``: (start, end, kind), pattern by pattern."""
    for pattern in PATTERNS:
        if pattern.anchor_back is not None:
            matches: Iterator[re.Match[bytes]] = _anchored(pattern, data)
        elif any(t in data for t in pattern.triggers):
            matches = pattern.regex.finditer(data)
        else:
            continue
        value = "v" in pattern.regex.groupindex
        for m in matches:
            kind = confirm(pattern, data, m)
            if kind is not None:
                start, end = m.span("v") if value else m.span()
                yield start, end, kind
