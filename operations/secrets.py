"""pyinfra facts and operations for secrets: host keys in, encrypted files out.

* ``SshHostKey``: the host's ``/etc/ssh/ssh_host_ed25519_key.pub`` line.
* ``SecretsGeneration``: where ``/run/secrets`` points now.
* ``install_secrets``: upload the host's *encrypted* sops files and decrypt
  them on the host with its own host key into a new ``/run/secrets.d/N``,
  switched in atomically (see ``nixify.secrets.install``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shlex
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from pyinfra.api.command import FunctionCommand, QuoteString, StringCommand
from pyinfra.api.facts import FactBase
from pyinfra.api.operation import operation
from pyinfra.context import host

from nixify.errors import ConfigError
from nixify.paths import repo_root
from nixify.secrets.audit import stale_mounts
from nixify.secrets.install import (
    HELPER_REMOTE,
    HOST_KEY,
    REMOTE_ENCRYPTED_DIR,
    SECRETS_LINK,
    SecretFileSpec,
    helper_source,
    plan_for,
    sops_binary_path,
)
from nixify.secrets.recipients import RECORD_NAME, RecipientsRecord
from nixify.secrets.sopsfile import SopsFile
from nixify.secrets.ssh_to_age import recipient_of_public_line

HOST_KEY_PUB = HOST_KEY + ".pub"
logger = logging.getLogger("pyinfra")


class SshHostKey(FactBase[Any]):
    """The host's ed25519 public host key line (``ssh-ed25519 AAAA...``), or None."""

    def command(self, path: str = HOST_KEY_PUB) -> StringCommand:
        return StringCommand("cat", QuoteString(path), "2>/dev/null", "||", "true")

    def process(self, output: list[str]) -> str | None:
        for line in output:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "ssh-ed25519":
                return f"{parts[0]} {parts[1]}"
        return None


_DIGEST = ".installed"
_INLINE_LIMIT = 64 * 1024  # bytes of encrypted files sent inside one command


class SecretsInstalled(FactBase[Any]):
    """The digest of what was last installed (files, helper, plan), while
    ``/run/secrets`` exists; None otherwise."""

    def command(self, digest_file: str) -> StringCommand:
        return StringCommand(
            "test",
            "-e",
            QuoteString(SECRETS_LINK),
            "&&",
            "cat",
            QuoteString(digest_file),
            "2>/dev/null",
            "||",
            "true",
        )

    def process(self, output: list[str]) -> str | None:
        return output[0].strip() if output and output[0].strip() else None


class SecretsGeneration(FactBase[Any]):
    """The target of ``/run/secrets`` (``/run/secrets.d/N``), or None."""

    def command(self, link: str = SECRETS_LINK) -> StringCommand:
        return StringCommand("readlink", QuoteString(link), "||", "true")

    def process(self, output: list[str]) -> str | None:
        return output[0].strip() if output and output[0].strip() else None


def record_host_key(secrets_dir: str | Path, name: str, line: str) -> str | None:
    """Put ``name``'s host key line into the recipients record: 'new', 'changed' or None."""
    path = Path(secrets_dir) / RECORD_NAME
    record = RecipientsRecord.load(path)
    change = record.set_host_key(name, line)
    if change is not None:
        record.save(path)
    return change


def host_key_check(secrets_dir: str | Path, mounts: Sequence[str]) -> list[str]:
    """Problems with this host's key, read live by ``SshHostKey``; empty when all is well.

    Names a host whose key changed since its secrets were keyed (a rebuilt host)
    and the files that need a rekey. The deploy runs it before ``install_secrets``.
    """
    line = host.get_fact(SshHostKey)
    if line is None:
        return [f"{host.name}: no ed25519 host key at {HOST_KEY_PUB}"]
    recipient = recipient_of_public_line(line, where=host.name)
    problems = []
    record = RecipientsRecord.load(Path(secrets_dir) / RECORD_NAME)
    known = record.hosts.get(host.name)
    if known is not None and known.age != recipient:
        problems.append(
            f"{host.name}: host key changed since it was recorded (rebuilt host?); "
            "run `nixify secrets collect`, `rules` and `rekey`"
        )
    stale = stale_mounts(Path(secrets_dir), host.name, recipient, mounts)
    if stale:
        problems.append(f"{host.name}: not keyed to its current host key: {' '.join(stale)}")
    return problems


def secrets_scripts(
    host: Any,
    secrets_dir: str,
    mounts: Sequence[str],
    decrypter: str,
    python: str = "python3",
    declared: Mapping[str, SecretFileSpec] | None = None,
    remote_dir: str = REMOTE_ENCRYPTED_DIR,
    force: bool = False,
) -> list[str]:
    """The shell scripts that install ``host``'s secrets, in order (empty when what is
    installed is already this). Only encrypted sops files travel; each script is
    small enough for one command line (large files go in chunks first)."""
    if not mounts:
        return []
    staged: list[tuple[str, bytes, str]] = [(HELPER_REMOTE, helper_source().read_bytes(), "0500")]
    for rel in mounts:
        if ".." in Path(rel).parts or rel.startswith("/"):
            raise ConfigError(f"host {host.name}: secret path {rel!r} must be relative")
        local = Path(secrets_dir) / rel
        # refuses anything that is not an encrypted sops file: plaintext never travels
        SopsFile.load(local)
        staged.append((f"{remote_dir}/{rel}", local.read_bytes(), "0600"))
    plan = plan_for(host.name, list(mounts), decrypter, python, declared)
    digest = hashlib.sha256()
    for dest, data, mode in staged:
        digest.update(f"{dest}\0{mode}\0{len(data)}\0".encode() + data)
    digest.update(plan.script().encode())
    installed = host.get_fact(SecretsInstalled, digest_file=f"{remote_dir}/{_DIGEST}")
    if installed == digest.hexdigest() and not force:
        return []
    scripts: list[str] = []
    stage = ""
    for dest, data, mode in staged:
        q, tmp = shlex.quote, shlex.quote(dest + ".tmp")
        chunks = [data[i : i + _INLINE_LIMIT] for i in range(0, len(data), _INLINE_LIMIT)]
        head = f"mkdir -p {q(str(Path(dest).parent))} && : > {tmp} && chmod {mode} {tmp}"
        writes = [f"printf %s {q(base64.b64encode(c).decode())} | base64 -d >> {tmp}"
                  for c in chunks]
        done = f"mv -f {tmp} {q(dest)}"
        if len(data) > _INLINE_LIMIT:  # its own commands, before the install
            scripts.append("set -eu\numask 077\n" + head)
            scripts.extend("set -eu\n" + w for w in writes)
            stage += done + "\n"
        else:  # one round trip: the encrypted files travel inside the install script
            stage += " && ".join([head, *writes, done]) + "\n"
    record = f"printf '%s\\n' {digest.hexdigest()} > {shlex.quote(remote_dir + '/' + _DIGEST)}\n"
    scripts.append("set -eu\numask 077\n" + stage + plan.script() + record)
    return scripts


@operation()
def install_secrets(
    secrets_dir: str,
    mounts: Sequence[str],
    decrypter: str,
    python: str = "python3",
    declared: Mapping[str, SecretFileSpec] | None = None,
    remote_dir: str = REMOTE_ENCRYPTED_DIR,
    force: bool = False,
) -> Generator[Any, None, None]:
    """Install this host's secrets under /run/secrets, decrypted on the host.

    + secrets_dir: the operator's secrets directory (encrypted sops files)
    + mounts: paths of the files this host mounts, relative to ``secrets_dir``
    + decrypter: path of the ``sops`` binary on the host
    + python: python3 on the host (runs the uploaded stdlib-only identity helper)
    + declared: per file mode/owner/group overrides (default 0400 root:root)
    + force: install a new generation even when nothing changed
    """
    scripts = secrets_scripts(
        host, secrets_dir, mounts, decrypter, python, declared, remote_dir, force
    )
    if not scripts:
        host.noop(f"secrets of {host.name} already installed")
    for script in scripts:
        yield StringCommand("sh", "-c", QuoteString(script))


def _refuse(state: Any, host: Any, message: str) -> bool:
    """A command that fails the host with ``message`` (no secret in it)."""
    host.log_styled(message, fg="red", log_func=logger.error)
    return False


def default_decrypter() -> str:
    """``host.data.sops_binary`` when set, else the sops binary of this venv (the lab's)."""
    configured = host.data.get("sops_binary")
    return str(configured) if configured else sops_binary_path()


@operation()
def deploy_secrets(
    secrets_dir: str | None = None,
    decrypter: str | None = None,
    python: str = "python3",
    declared: Mapping[str, SecretFileSpec] | None = None,
) -> Generator[Any, None, None]:
    """The deploy's secrets step (between gate 4 and gate 5): check the key, install.

    + secrets_dir: default ``host.data.secrets_dir``, else the project's ``secrets/``
    + decrypter: sops on the host (default ``default_decrypter()``)
    + python: python3 on the host, for the identity helper
    + declared: per file mode/owner/group overrides (default 0400 root:root)

    A host whose live host key is not the recorded one, or whose files are not
    keyed to it, fails here with the reason and the files to rekey; nothing is
    uploaded to it.
    """
    mounts = [str(m) for m in (host.data.get("secrets") or [])]
    if not mounts:
        host.noop(f"{host.name} mounts no secrets")
        return
    sdir = secrets_dir or host.data.get("secrets_dir") or str(repo_root() / "secrets")
    try:
        problems = host_key_check(sdir, mounts)
    except ConfigError as exc:
        problems = [str(exc)]
    if problems:
        yield FunctionCommand(_refuse, ("; ".join(problems),), {})
        return
    yield from install_secrets._inner(
        secrets_dir=str(sdir),
        mounts=mounts,
        decrypter=decrypter or default_decrypter(),
        python=python,
        declared=declared,
    )


# -- secrets with activation: the encrypted files staged for a closure ------------------

BY_CLOSURE_DIR = f"{REMOTE_ENCRYPTED_DIR}/by-closure"
_CHUNK = 48 * 1024  # bytes of base64 per command line word
_COMMAND_LIMIT = 96 * 1024  # a command line stays below the kernel's 128 KiB per word


def by_closure_dir(closure: str) -> str:
    """Where a closure's encrypted files and manifest wait for its activation."""
    return f"{BY_CLOSURE_DIR}/{PurePosixPath(closure).name}"


def stage_scripts(
    host_name: str,
    secrets_dir: str,
    mounts: Sequence[str],
    closure: str,
    declared: Mapping[str, SecretFileSpec] | None = None,
) -> list[str]:
    """The commands that stage ``closure``'s secrets on the host, before gate 3: its
    encrypted sops files (only those: plaintext never travels) and a manifest, in
    ``by_closure_dir(closure)``, which appears complete in one rename. Unchanged
    files are not sent again (the digest is compared on the host first)."""
    declared = declared or {}
    files: list[tuple[str, bytes]] = []
    for rel in mounts:
        if ".." in Path(rel).parts or rel.startswith("/"):
            raise ConfigError(f"host {host_name}: secret path {rel!r} must be relative")
        local = Path(secrets_dir) / rel
        SopsFile.load(local)  # names the file when it is not a readable sops file
        files.append((rel, local.read_bytes()))
    manifest = {
        "files": [
            {"file": rel, "mode": spec.mode, "owner": spec.owner, "group": spec.group}
            for rel in mounts
            for spec in [declared.get(rel, SecretFileSpec(rel))]
        ]
    }
    manifest_bytes = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    digest = hashlib.sha256(manifest_bytes)
    for rel, data in files:
        digest.update(f"\0{rel}\0{len(data)}\0".encode() + data)
    q = shlex.quote
    final = by_closure_dir(closure)
    tmp = f"{BY_CLOSURE_DIR}/.{PurePosixPath(closure).name}.tmp"
    writes = [("manifest.json", manifest_bytes)] + [(f"files/{rel}", d) for rel, d in files]
    body: list[str] = []
    for rel, data in writes:
        target = q(f"{tmp}/{rel}")
        body.append(f"mkdir -p {q(str(PurePosixPath(tmp, rel).parent))} && : > {target}")
        b64 = base64.b64encode(data).decode()
        body += [f"printf %s {q(b64[i : i + _CHUNK])} | base64 -d >> {target}"
                 for i in range(0, len(b64), _CHUNK)]
    head = (
        f"set -eu\numask 077\n"
        f"if [ \"$(cat {q(final + '/digest')} 2>/dev/null)\" = {digest.hexdigest()} ]; then "
        "echo unchanged; exit 0; fi\n"
        f"mkdir -p {q(BY_CLOSURE_DIR)} && rm -rf {q(tmp)} && mkdir -p {q(tmp)}\n"
    )
    tail = (
        f"printf '%s\\n' {digest.hexdigest()} > {q(tmp + '/digest')}\n"
        f"rm -rf {q(final)} && mv -T {q(tmp)} {q(final)} && echo staged\n"
    )
    # one command when it fits a command line; else the appends in commands of their own
    # (the caller stops after the first prints "unchanged")
    if sum(len(b) for b in body) < _COMMAND_LIMIT:
        return [head + "\n".join(body) + "\n" + tail]
    scripts, part = [head], ""
    for line in body:
        if part and len(part) + len(line) > _COMMAND_LIMIT:
            scripts.append("set -eu\n" + part)
            part = ""
        part += line + "\n"
    scripts.append("set -eu\n" + part + tail)
    return scripts


def unstage_script(closures: Sequence[str]) -> str:
    """Remove the staged secrets of closures no pin keeps any more."""
    return " && ".join(f"rm -rf {shlex.quote(by_closure_dir(c))}" for c in closures) or "true"
