"""Where the fleet's binary cache is, and what hosts trust.

A ``cache.yaml``::

    url: http://cache.example:5080        # hosts substitute from it
    push_url: http://cache.example:5080   # builders push to it (default: url)
    public_keys: [fleet-cache-1:base64...] # hosts' trusted-public-keys
    signing_key: builders/cache-signing-key.yaml  # sops file in the secrets dir
    server_host: nas-1                    # the host serving it (informational)

Found, in order: ``--data cache_config=PATH``, ``$NIXIFY_CACHE_CONFIG``, the
inventory's host data ``default_cache_config`` (used only when that file exists),
``inventories/cache.yaml`` of the project.
No file (or ``--data cache=off``): no cache, closures go from the builder to
each target directly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nixify.cache.keys import load_signing_key
from nixify.errors import ConfigError
from nixify.paths import repo_root
from nixify.secrets.keys import find_identities
from nixify.util import atomic_write, parse_flag

CONFIG_ENV = "NIXIFY_CACHE_CONFIG"
# Host-data keys an inventory may set: its cache configuration (when neither
# ``--data cache_config`` nor $NIXIFY_CACHE_CONFIG names one), and an age identity
# file that opens the signing key (besides the ones sops's own lookup finds).
DEFAULT_CONFIG_KEY = "default_cache_config"
IDENTITY_FILE_KEY = "age_identity_file"
CONFIG_NAME = "cache.yaml"
NIX_CONF_INCLUDE = "nixify-cache.conf"  # /etc/nix/<this>, included by the host's nix.conf
_URL = re.compile(r"^(https?|file|s3|ssh|ssh-ng)://\S+$")
_PUBKEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*:[A-Za-z0-9+/]{43}=$")


@dataclass(frozen=True)
class CacheConfig:
    url: str
    public_keys: tuple[str, ...]
    push_url: str = ""
    signing_key: str = "builders/cache-signing-key.yaml"
    server_host: str | None = None
    source: str = field(default="", compare=False)

    @property
    def push(self) -> str:
        return self.push_url or self.url

    def nix_conf(self) -> str:
        """The host-side settings: substitute from the cache, trust only its keys,
        and require signatures (a closure without a trusted signature is refused)."""
        return (
            "# nixify: the fleet's binary cache (written by `nixify cache`)\n"
            f"substituters = {self.url}\n"
            f"trusted-public-keys = {' '.join(self.public_keys)}\n"
            "require-sigs = true\n"
        )

    def to_yaml(self) -> str:
        doc: dict[str, Any] = {"url": self.url, "public_keys": list(self.public_keys)}
        if self.push_url:
            doc["push_url"] = self.push_url
        doc["signing_key"] = self.signing_key
        if self.server_host:
            doc["server_host"] = self.server_host
        return "# nixify binary cache (public: URLs and public keys only)\n" + yaml.safe_dump(
            doc, sort_keys=False
        )

    def save(self, path: Path) -> None:
        atomic_write(path, self.to_yaml().encode(), mode=0o644)


def parse_cache_config(doc: Any, where: str) -> CacheConfig:
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: expected a mapping (url, public_keys, ...)")
    unknown = sorted(set(doc) - {"url", "push_url", "public_keys", "signing_key", "server_host"})
    if unknown:
        raise ConfigError(f"{where}: field {unknown[0]!r}: unknown")
    url = doc.get("url")
    if not isinstance(url, str) or not _URL.match(url):
        raise ConfigError(f"{where}: field 'url': not a binary-cache URL: {url!r}")
    push = doc.get("push_url") or ""
    if push and (not isinstance(push, str) or not _URL.match(push)):
        raise ConfigError(f"{where}: field 'push_url': not a binary-cache URL: {push!r}")
    keys = doc.get("public_keys")
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list) or not keys:
        raise ConfigError(f"{where}: field 'public_keys': at least one 'name:base64' key")
    for k in keys:
        if not isinstance(k, str) or not _PUBKEY.match(k):
            raise ConfigError(f"{where}: field 'public_keys': not a Nix public key: {k!r}")
    secret = doc.get("signing_key", "builders/cache-signing-key.yaml")
    if not isinstance(secret, str) or secret.startswith("/") or ".." in secret.split("/"):
        raise ConfigError(f"{where}: field 'signing_key': a path inside the secrets directory")
    server = doc.get("server_host")
    if server is not None and not isinstance(server, str):
        raise ConfigError(f"{where}: field 'server_host': a host name")
    return CacheConfig(url, tuple(keys), push, secret, server, where)


def read_cache_config(path: Path) -> CacheConfig:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML: {exc}") from exc
    return parse_cache_config(doc, str(path))


def config_path(data: Any, repo: Path | None = None) -> Path | None:
    """The cache configuration this run uses (see the module doc), or None."""
    explicit = data.get("cache_config") if data is not None else None
    if explicit:
        return Path(str(explicit))
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    default = data.get(DEFAULT_CONFIG_KEY) if data is not None else None
    if default:
        candidate = Path(str(default))
        return candidate if candidate.is_file() else None
    if repo is not None and (repo / "inventories" / CONFIG_NAME).is_file():
        return repo / "inventories" / CONFIG_NAME
    return None


def load_cache_config(data: Any, repo: Path | None = None) -> CacheConfig | None:
    """The run's cache, or None: none configured, or ``--data cache=off``."""
    flag = data.get("cache") if data is not None else None
    if flag not in (None, "") and not parse_flag(flag, "cache"):
        return None
    path = config_path(data, repo)
    if path is None:
        return None
    if not path.is_file():
        raise ConfigError(f"{path}: cache configuration not found")
    return read_cache_config(path)


def secrets_dir_of(data: Any, repo: Path | None = None) -> Path:
    sdir = data.get("secrets_dir") if data is not None else None
    if sdir:
        return Path(str(sdir))
    if repo is None:
        repo = repo_root()
    return repo / "secrets"


def identity_files_of(data: Any) -> list[Path]:
    """Age identity files to decrypt the signing key with: the one the inventory
    names (``age_identity_file``) when it exists (sops's own lookup adds the rest)."""
    named = data.get(IDENTITY_FILE_KEY) if data is not None else None
    if named and Path(str(named)).is_file():
        return [Path(str(named))]
    return []


def signing_key_for(cache: CacheConfig, data: Any, repo: Path | None = None) -> Any:
    """A callable that decrypts the cache signing key in memory when first called:
    the sops file ``cache.signing_key`` of the secrets directory, with the
    operator's age identities (sops's own lookup, plus the inventory's identity file)."""

    def load() -> Any:
        path = secrets_dir_of(data, repo) / cache.signing_key
        ids = find_identities(extra_files=identity_files_of(data))
        if not ids:
            raise ConfigError(f"{path}: no age identity to decrypt it with (SOPS_AGE_KEY_FILE)")
        return load_signing_key(path, [i.identity for i in ids])

    return load
