"""The environment nixify runs Nix with on the operator's machine."""

from __future__ import annotations

import os
from collections.abc import Mapping

# Offline: no substituters unless a cache is configured explicitly; the new CLI on.
NIX_OFFLINE_CONFIG = "substituters =\nexperimental-features = nix-command flakes"


def nix_environ(base: Mapping[str, str] | None = None, extra_config: str = "") -> dict[str, str]:
    """A copy of ``base`` (default: ``os.environ``) with nixify's ``NIX_CONFIG``.

    An existing ``NIX_CONFIG`` is kept and nixify's settings are appended, so the
    caller's own settings win only where nixify sets nothing.
    """
    env = dict(os.environ if base is None else base)
    parts = [p for p in (env.get("NIX_CONFIG", ""), NIX_OFFLINE_CONFIG, extra_config) if p]
    env["NIX_CONFIG"] = "\n".join(parts)
    return env
