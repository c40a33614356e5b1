"""Writing secrets without plaintext on disk: ``nixify secrets add`` and ``edit``.

* ``add FILE --for ROLE|HOST`` encrypts a new file to the operator and every host
  that mounts it (the inventory's hosts, plus the hosts ``--for`` names), as the
  rule ``nixify secrets rules`` writes for it;
* ``edit FILE`` decrypts with the operator's identity, lets ``$EDITOR`` change it,
  and encrypts it again to the same recipients under the same data key (as
  ``sops edit`` does).

The plaintext is read from standard input (``-``) or edited in a private directory
on a memory file system (``/dev/shm`` or ``$XDG_RUNTIME_DIR``: directory 0700, file
0600), removed afterwards whatever happens. It is never written into the project.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nixify.errors import ConfigError
from nixify.secrets import jsonio, yamlio
from nixify.secrets.rules import compute_rules
from nixify.secrets.sopsfile import SopsError, SopsFile, encrypt_tree, format_of
from nixify.secrets.tree import Branch
from nixify.util import atomic_write

PRIVATE_DIRS = ("/dev/shm", "$XDG_RUNTIME_DIR")


def parse_plaintext(text: str, path: Path) -> Branch:
    """The document ``text`` as the format of ``path`` reads it (named on error)."""
    where = f"{path} (plaintext)"
    try:
        return yamlio.load(text, where) if format_of(path) == "yaml" else jsonio.load(text, where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def recipients_for(
    relpath: str,
    mounts: Mapping[str, Sequence[str]],
    readers: Sequence[str],
    host_recipients: Mapping[str, str],
    operator_recipients: Sequence[str],
) -> tuple[list[str], list[str]]:
    """(recipients, hosts) of ``relpath``: the operator, the hosts that mount it in
    the inventory, and ``readers`` (hosts named by ``--for``)."""
    with_new = {h: list(files) for h, files in mounts.items()}
    for host in readers:
        with_new.setdefault(host, [])
        if relpath not in with_new[host]:
            with_new[host].append(relpath)
    only = {h: [f for f in files if f == relpath] for h, files in with_new.items()}
    (rule,) = compute_rules(only, host_recipients, operator_recipients, extra_files=[relpath])
    return list(rule.recipients), list(rule.hosts)


def private_dir() -> Path:
    """A directory on a memory file system for the plaintext (never the disk)."""
    for candidate in ("/dev/shm", os.environ.get("XDG_RUNTIME_DIR") or ""):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            return Path(candidate)
    raise ConfigError(
        "no private memory file system (/dev/shm or $XDG_RUNTIME_DIR) for the plaintext; "
        "give the plaintext on standard input with `-` instead"
    )


@contextmanager
def private_file(name: str, text: str) -> Iterator[Path]:
    """``text`` in a 0600 file in a fresh 0700 directory on a memory file system,
    removed on the way out."""
    directory = Path(tempfile.mkdtemp(prefix="nixify-secret-", dir=private_dir()))
    try:
        os.chmod(directory, 0o700)
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_editor(path: Path) -> None:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    proc = subprocess.run([*shlex.split(editor), str(path)])
    if proc.returncode != 0:
        raise ConfigError(f"{editor} exited {proc.returncode}; nothing written")


def edit_text(path: Path, text: str) -> str:
    """``text`` after the operator's ``$EDITOR`` changed it (in a private file)."""
    with private_file(path.name, text) as tmp:
        run_editor(tmp)
        return tmp.read_text()


def read_plaintext(source: str | None, path: Path, initial: str) -> str:
    """The new plaintext: standard input for ``-``, else ``initial`` in ``$EDITOR``."""
    if source == "-":
        return sys.stdin.read()
    if source is not None:
        raise ConfigError(f"{source}: plaintext comes from standard input (-) or $EDITOR only")
    return edit_text(path, initial)


def add_secret(path: Path, plaintext: str, recipients: Sequence[str]) -> None:
    """Encrypt ``plaintext`` to ``recipients`` into the new file ``path``."""
    if path.exists():
        raise ConfigError(f"{path}: exists; change it with `nixify secrets edit {path}`")
    text = encrypt_tree(parse_plaintext(plaintext, path), format_of(path), recipients)
    SopsFile.parse(text, format_of(path), str(path))  # what is written reads back
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode(), mode=0o644)


def edit_secret(path: Path, identities: Sequence[Any], source: str | None) -> bool:
    """Re-encrypt ``path`` with the operator's changes (same recipients and data key);
    False when nothing changed (the file is left alone)."""
    sf = SopsFile.load(path)
    try:
        key = sf.data_key(identities)
    except SopsError as exc:
        raise ConfigError(f"{exc} (edit needs an identity that opens {path})") from None
    before = sf.plaintext(identities)
    after = read_plaintext(source, path, before)
    if after == before:
        return False
    text = encrypt_tree(parse_plaintext(after, path), sf.fmt, sf.recipients, sf.rules,
                        data_key=key)
    SopsFile.parse(text, sf.fmt, str(path))
    atomic_write(path, text.encode())
    return True
