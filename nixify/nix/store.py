"""Store paths: recognising them and splitting them into hash and name."""

from __future__ import annotations

import re

STORE_DIR = "/nix/store"

# 32 characters of Nix's base-32 alphabet (no e, o, u, t), a dash, then a name.
_STORE_PATH = re.compile(r"^/nix/store/([0-9a-df-np-sv-z]{32})-([A-Za-z0-9+._?=-]+)(/.*)?$")


def is_store_path(path: str) -> bool:
    """True when ``path`` is a store path or lies inside one."""
    return _STORE_PATH.match(path) is not None


def store_path_root(path: str) -> str:
    """The top-level store path that ``path`` lies in; ValueError when it is not one."""
    m = _STORE_PATH.match(path)
    if m is None:
        raise ValueError(f"not a Nix store path: {path!r}")
    return f"{STORE_DIR}/{m.group(1)}-{m.group(2)}"


def store_path_name(path: str) -> str:
    """The name part of a store path (``hello-2.12`` of ``/nix/store/<hash>-hello-2.12``)."""
    m = _STORE_PATH.match(path)
    if m is None:
        raise ValueError(f"not a Nix store path: {path!r}")
    return m.group(2)
