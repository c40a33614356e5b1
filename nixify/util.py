"""Small helpers every subsystem shares: one of each.

* ``atomic_write``: replace a local file so that it is old or new at every instant.
* ``parse_flag``: the one yes/no parser for settings given as text.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nixify.errors import ConfigError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_flag(value: object, what: str) -> bool:
    """``value`` as a yes/no setting (a bool, or one of TRUE_WORDS / FALSE_WORDS in
    any case); anything else is refused, naming ``what`` and the allowed words."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ConfigError(
        f"{what}={value}: not a yes/no value (allowed: {', '.join(TRUE_WORDS + FALSE_WORDS)})"
    )


def fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def atomic_write(
    path: Path, data: bytes | str, mode: int | None = None, sync_dir: bool = True
) -> None:
    """Replace ``path`` by ``data``: temp file in the same dir, fsync, rename, fsync dir.

    With ``sync_dir=False`` the caller fsyncs the directory itself (once for many
    files); the file is still either old or new at every instant. ``mode`` defaults
    to the existing file's mode, else 0644.
    """
    payload = data.encode() if isinstance(data, str) else data
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(directory)
