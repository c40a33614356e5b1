"""Finding the operator's (or a host's) age identities, in the places sops looks.

Order: ``$SOPS_AGE_KEY`` (identities inline), ``$SOPS_AGE_KEY_FILE``,
``$SOPS_AGE_KEY_CMD`` (a command printing identities),
``$SOPS_AGE_SSH_PRIVATE_KEY_FILE`` (an OpenSSH ed25519 key, derived to its
X25519 identity as sops-nix does), then the default
``$XDG_CONFIG_HOME/sops/age/keys.txt`` (``~/.config/sops/age/keys.txt``).
All that are present are used; none at all is an error naming the places.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyrage

from nixify.errors import ConfigError
from nixify.secrets.ssh_to_age import private_key_to_age_identity

IDENTITY_PREFIX = "AGE-SECRET-KEY-1"


@dataclass(frozen=True)
class LoadedIdentity:
    """An X25519 identity and where it came from (never its secret)."""

    identity: pyrage.x25519.Identity
    source: str

    @property
    def recipient(self) -> str:
        return str(self.identity.to_public())


def parse_identities(text: str, source: str) -> list[LoadedIdentity]:
    """Identities of an age identity file's text (``#`` comments and blanks skipped)."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.upper().startswith(IDENTITY_PREFIX):
            raise ConfigError(f"{source}: line {number} is not an AGE-SECRET-KEY-1 identity")
        try:
            out.append(LoadedIdentity(pyrage.x25519.Identity.from_str(line), source))
        except Exception as exc:
            raise ConfigError(f"{source}: line {number}: invalid age identity") from exc
    return out


def identities_from_file(path: Path) -> list[LoadedIdentity]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read identity file: {exc.strerror}") from exc
    ids = parse_identities(text, str(path))
    if not ids:
        raise ConfigError(f"{path}: no age identity in the file")
    return ids


def identities_from_command(command: str) -> list[LoadedIdentity]:
    """Identities printed by ``command`` (``$SOPS_AGE_KEY_CMD``), run without a shell."""
    try:
        proc = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"$SOPS_AGE_KEY_CMD: cannot run: {exc}") from exc
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(f"$SOPS_AGE_KEY_CMD exited {proc.returncode}: {last[0]}")
    return parse_identities(proc.stdout, "$SOPS_AGE_KEY_CMD")


def identity_from_ssh_key(path: Path) -> LoadedIdentity:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read SSH private key: {exc.strerror}") from exc
    text = private_key_to_age_identity(data, where=str(path))
    return LoadedIdentity(pyrage.x25519.Identity.from_str(text), str(path))


def default_keys_file(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "sops" / "age" / "keys.txt"


def find_identities(
    env: Mapping[str, str] | None = None, extra_files: list[Path] | None = None
) -> list[LoadedIdentity]:
    """Every identity sops would find in ``env`` (default ``os.environ``), plus ``extra_files``."""
    env = os.environ if env is None else env
    found: list[LoadedIdentity] = []
    for path in extra_files or []:
        found.extend(identities_from_file(path))
    if env.get("SOPS_AGE_KEY"):
        found.extend(parse_identities(env["SOPS_AGE_KEY"], "$SOPS_AGE_KEY"))
    if env.get("SOPS_AGE_KEY_FILE"):
        found.extend(identities_from_file(Path(env["SOPS_AGE_KEY_FILE"])))
    if env.get("SOPS_AGE_KEY_CMD"):
        found.extend(identities_from_command(env["SOPS_AGE_KEY_CMD"]))
    if env.get("SOPS_AGE_SSH_PRIVATE_KEY_FILE"):
        found.append(identity_from_ssh_key(Path(env["SOPS_AGE_SSH_PRIVATE_KEY_FILE"])))
    default = default_keys_file(env)
    if default.is_file():
        found.extend(identities_from_file(default))
    if not found:
        raise ConfigError(
            "no age identity found: set SOPS_AGE_KEY, SOPS_AGE_KEY_FILE or "
            f"SOPS_AGE_SSH_PRIVATE_KEY_FILE, or create {default}"
        )
    return found
