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


DEPLOY_FILES = ("deploy.py", "rollback.py", "status.py")


def deploy_file(root: Path, name: str) -> str:
    """The deploy file ``name`` pyinfra runs: the project's own (relative to ``root``),
    else the copy shipped inside the installed package (``nixify/deploys/``, made by
    the build), else the one in the checkout this package runs from (editable)."""
    if (root / name).is_file():
        return name
    package = Path(__file__).resolve().parent
    for shipped in (package / "deploys" / name, package.parent / name):
        if shipped.is_file():
            return str(shipped)
    raise ConfigError(
        f"{name}: not in the project {root}, not shipped with the nixify package "
        f"({package / 'deploys'}), and no checkout beside it: run from a nixify checkout "
        "or reinstall the package"
    )
