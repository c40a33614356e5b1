"""Key material and addresses for the leak tests, generated at run time.

Nothing here is a literal leak: addresses are joined from parts and keys come
from ssh-keygen, openssl and age-keygen in a temporary directory, so the
repository stays clean under its own gate.
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey


@dataclass(frozen=True)
class Leak:
    name: str
    kind: str
    text: str  # what is pasted into a file (may span lines)
    inline: str  # a single-line form for URLs and brackets


def dotted(*parts: int) -> str:
    return ".".join(str(p) for p in parts)


def _ssh_string(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _sk_blob(key_type: str, body: bytes) -> str:
    return base64.b64encode(_ssh_string(key_type.encode()) + body).decode()


def _keygen(tmp: Path, name: str, *args: str) -> Path:
    path = tmp / name
    subprocess.run(
        ["ssh-keygen", "-q", "-N", "", "-C", "", "-f", str(path), *args],
        check=True,
        capture_output=True,
    )
    return path


def colons(*groups: str) -> str:
    return ":".join(groups)


def nix_cache_keypair(tmp: Path, name: str = "cache.example-1") -> tuple[str, str]:
    """(secret, public) as ``nix-store --generate-binary-cache-key`` writes them.

    Without nix-store, the same format from an Ed25519 key (seed, then public key).
    """
    nix_store = shutil.which("nix-store")
    if nix_store is not None:
        sk, pk = tmp / f"{name}.sk", tmp / f"{name}.pk"
        subprocess.run(
            [nix_store, "--generate-binary-cache-key", name, str(sk), str(pk)],
            check=True,
            capture_output=True,
        )
        return sk.read_text().strip(), pk.read_text().strip()
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes_raw()
    return (
        f"{name}:{base64.b64encode(seed + public).decode()}",
        f"{name}:{base64.b64encode(public).decode()}",
    )


def wireguard_key() -> str:
    """A WireGuard private key as ``wg genkey`` prints it (base64 of 32 bytes)."""
    raw = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw).decode()


def make_leaks(tmp: Path) -> list[Leak]:
    tmp.mkdir(parents=True, exist_ok=True)
    leaks = [
        Leak("rfc1918-10", "private-ipv4", dotted(10, 1, 2, 3), dotted(10, 1, 2, 3)),
        Leak("rfc1918-172", "private-ipv4", dotted(172, 31, 255, 9), dotted(172, 16, 0, 1)),
        Leak("rfc1918-192", "private-ipv4", dotted(192, 168, 1, 20), dotted(192, 168, 0, 1)),
        Leak("tailscale-v4", "tailscale-ipv4", dotted(100, 101, 7, 8), dotted(100, 64, 0, 1)),
        Leak(
            "tailscale-v6",
            "tailscale-ipv6",
            ":".join(["fd7a", "115c", "a1e0", "ab12", "4843", "cd96", "6258", "b240"]),
            ":".join(["FD7A", "115C", "A1E0", "", "53"]),
        ),
        Leak(
            "ula-v6",
            "private-ipv6",
            colons("fd12", "3456", "789a", "1", "", "20"),
            colons("fd00", "", "a", "1"),
        ),
        Leak("ula-fc-v6", "private-ipv6", colons("FC00", "AB", "", "7"),
             colons("fc01", "2", "3", "4", "5", "6", "7", "8")),
        Leak(
            "link-local-v6",
            "link-local-ipv6",
            colons("fe80", "", "1c2d", "3eff", "fe4f", "5a6b") + "%eth0",
            colons("fe80", "", "a", "bc"),
        ),
    ]
    secret, _public = nix_cache_keypair(tmp)
    leaks.append(Leak("nix-cache-secret", "nix-cache-secret-key", secret, secret))
    wg, psk = wireguard_key(), wireguard_key()
    leaks.append(Leak("wireguard-conf", "wireguard-private-key", "PrivateKey = " + wg,
                      "PresharedKey=" + psk))
    leaks.append(Leak("wireguard-nixos", "wireguard-private-key", f'privateKey = "{wg}";',
                      f"private_key:{wg}"))
    ident = subprocess.run(["age-keygen"], check=True, capture_output=True, text=True).stdout
    secret = next(line for line in ident.splitlines() if not line.startswith("#"))
    recipient = subprocess.run(
        ["age-keygen", "-y"], input=ident, check=True, capture_output=True, text=True
    ).stdout.strip()
    leaks.append(Leak("age-recipient", "age-recipient", recipient, recipient))
    leaks.append(Leak("age-identity", "age-identity", secret, secret))

    for name, args in (
        ("ed25519", ["-t", "ed25519"]),
        ("rsa", ["-t", "rsa", "-b", "1024"]),
        ("ecdsa", ["-t", "ecdsa", "-b", "256"]),
        ("ecdsa521", ["-t", "ecdsa", "-b", "521"]),
    ):
        pub = _keygen(tmp, f"pub-{name}", *args).with_suffix(".pub")
        pub = tmp / f"pub-{name}.pub"
        line = pub.read_text().strip()
        leaks.append(Leak(f"ssh-{name}", "ssh-public-key", line, line.split()[1]))
    ca = _keygen(tmp, "ca", "-t", "ed25519")
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca), "-I", "host", "-h", "-n", "nas",
         str(tmp / "pub-ed25519.pub")],
        check=True,
        capture_output=True,
    )
    cert = (tmp / "pub-ed25519-cert.pub").read_text().strip()
    leaks.append(Leak("ssh-cert", "ssh-public-key", cert, cert.split()[1]))
    sk_ed = _sk_blob(
        "sk-" + "ssh-ed25519@openssh.com", _ssh_string(os.urandom(32)) + _ssh_string(b"ssh:")
    )
    sk_ec = _sk_blob(
        "sk-" + "ecdsa-sha2-nistp256@openssh.com",
        _ssh_string(b"nistp256") + _ssh_string(b"\x04" + os.urandom(64)) + _ssh_string(b"ssh:"),
    )
    leaks.append(Leak("ssh-sk-ed25519", "ssh-public-key", "sk-ssh-ed25519@openssh.com " + sk_ed,
                      sk_ed))
    leaks.append(Leak("ssh-sk-ecdsa", "ssh-public-key", sk_ec, sk_ec))

    privs = {
        "openssh": _keygen(tmp, "priv-openssh", "-t", "ed25519"),
        "rsa-pem": _keygen(tmp, "priv-rsa", "-t", "rsa", "-b", "1024", "-m", "PEM"),
        "ec-pem": _keygen(tmp, "priv-ec", "-t", "ecdsa", "-b", "256", "-m", "PEM"),
        "pkcs8": _keygen(tmp, "priv-pkcs8", "-t", "ecdsa", "-b", "256", "-m", "PKCS8"),
    }
    enc = tmp / "priv-enc"
    subprocess.run(
        ["openssl", "pkcs8", "-topk8", "-in", str(privs["pkcs8"]), "-out", str(enc),
         "-passout", "pass:test", "-v2", "aes-256-cbc"],
        check=True,
        capture_output=True,
    )
    privs["pkcs8-encrypted"] = enc
    pgp = "-" * 5 + "BEGIN PGP PRIVATE KEY BLOCK" + "-" * 5
    leaks.append(Leak("private-pgp", "private-key", pgp + "\n\nlQOYBGV...\n", pgp))
    for name, path in privs.items():
        block = path.read_text().strip()
        leaks.append(Leak(f"private-{name}", "private-key", block, block.splitlines()[0]))
    return leaks
