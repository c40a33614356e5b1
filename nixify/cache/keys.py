"""The cache signing key: made by Nix, kept only as a sops file.

The secret half exists in plaintext only in memory: ``generate_signing_key``
reads it out of a private temporary directory that it removes at once, and
``write_key_secret`` encrypts it straight into a sops file. ``SigningKey`` never
shows the secret in ``repr``/``str``; ``secret_bytes`` is what a signer reads on
its stdin (``nix store sign --key-file /dev/stdin``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyrage

from nixify.errors import ConfigError
from nixify.nix import nix_environ
from nixify.secrets.rules import CONFIG_NAME, load_sops_yaml, rule_for
from nixify.secrets.sopsfile import SopsFile, encrypt_tree
from nixify.secrets.tree import Branch, Comment
from nixify.util import atomic_write

KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_KEY_TEXT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*):([A-Za-z0-9+/]+={0,2})$")
DEFAULT_SECRET = "builders/cache-signing-key.yaml"


@dataclass(frozen=True)
class SigningKey:
    """A binary-cache key pair; the secret is never printed."""

    name: str
    public: str  # "name:base64", goes into trusted-public-keys
    _secret: str = field(repr=False)

    def __str__(self) -> str:
        return f"cache signing key {self.name} (public {self.public})"

    @property
    def secret_bytes(self) -> bytes:
        return self._secret.encode()


def _check_key_text(text: str, what: str, where: str) -> str:
    text = text.strip()
    if not _KEY_TEXT.match(text):
        raise ConfigError(f"{where}: field {what!r}: not a Nix key ('name:base64')")
    return text


def generate_signing_key(name: str) -> SigningKey:
    """A fresh key pair from ``nix-store --generate-binary-cache-key``."""
    if not KEY_NAME.match(name):
        raise ConfigError(f"cache key name {name!r}: letters, digits, '.', '_' and '-' only")
    tmp = Path(tempfile.mkdtemp(prefix="nixify-cache-key-"))
    try:
        tmp.chmod(0o700)
        proc = subprocess.run(
            ["nix-store", "--generate-binary-cache-key", name, str(tmp / "sk"), str(tmp / "pk")],
            capture_output=True,
            env=nix_environ(),
        )
        if proc.returncode != 0:
            raise ConfigError(
                f"nix-store --generate-binary-cache-key {name}: "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        secret = (tmp / "sk").read_text().strip()
        public = (tmp / "pk").read_text().strip()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return SigningKey(name, public, secret)


def key_document(key: SigningKey) -> Branch:
    return Branch(
        [
            Comment(" nixify binary-cache signing key (nix-store --generate-binary-cache-key)"),
            ("name", key.name),
            ("public_key", key.public),
            ("secret_key", key._secret),
        ]
    )


def write_key_secret(path: Path, key: SigningKey, recipients: Sequence[str]) -> None:
    """Encrypt ``key`` into the sops file ``path`` (atomically, 0600)."""
    doc = encrypt_tree(key_document(key), "yaml", list(recipients))
    atomic_write(path, doc.encode(), mode=0o600)


def load_signing_key(path: Path, identities: Iterable[pyrage.x25519.Identity]) -> SigningKey:
    """Decrypt the sops file ``path`` in memory. Errors name the file and field, never a value."""
    if not path.is_file():
        raise ConfigError(f"{path}: cache signing key secret not found")
    tree = SopsFile.load(path).decrypt(identities)
    values = {}
    for fname in ("name", "public_key", "secret_key"):
        value = tree.get(fname)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: field {fname!r}: missing or not a string")
        values[fname] = value
    secret = _check_key_text(values["secret_key"], "secret_key", str(path))
    public = _check_key_text(values["public_key"], "public_key", str(path))
    if secret.split(":", 1)[0] != public.split(":", 1)[0]:
        raise ConfigError(f"{path}: field 'public_key': its name differs from the secret key's")
    return SigningKey(values["name"], public, secret)


def recipients_for(secrets_dir: Path, relpath: str) -> list[str]:
    """The recipients ``.sops.yaml`` in ``secrets_dir`` names for ``relpath``."""
    config = secrets_dir / CONFIG_NAME
    rule = rule_for(load_sops_yaml(config), relpath, config)
    return list(rule.recipients)
