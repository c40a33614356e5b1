"""Where the project's own files are: the fleet declaration, fleet/, reports/."""

from __future__ import annotations

import os
from pathlib import Path

from nixify.errors import ConfigError

_MARKER = Path("inventories") / "hosts.yaml"


def repo_root(start: Path | None = None) -> Path:
    """The nixify project directory: ``$NIXIFY_REPO``, else the nearest directory
    upward from ``start`` (default: the working directory) holding
    ``inventories/hosts.yaml``, else the checkout this package was installed from."""
    env = os.environ.get("NIXIFY_REPO")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / _MARKER).is_file():
            return candidate
    installed = Path(__file__).resolve().parent.parent
    if (installed / _MARKER).is_file():
        return installed
    raise ConfigError(f"cannot find the project ({_MARKER} in {here} or above); set NIXIFY_REPO")


def hosts_file(root: Path | None = None) -> Path:
    return (root or repo_root()) / _MARKER


def fleet_dir(root: Path | None = None) -> Path:
    return (root or repo_root()) / "fleet"
