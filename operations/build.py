"""Gate 1's builds: every selected host's system evaluated and built on the pool.

Builds are coalesced: the first host to reach gate 1 builds for every selected
host (``nixify.cache.pool.BuildPool``): one ``nix-build`` per evaluating
builder, its derivations spread over every reachable builder by Nix's own
distributed builds. With a binary cache configured (``nixify.cache.config``)
the builders sign and push, and each target fetches its closure from the
cache, refusing what its trusted keys did not sign; without one, each builder
copies each closure straight to its target. The operator reaches the builders
over OpenSSH whatever ``--limit`` says; builders are not deployed unless
selected. A host with no usable builder is skipped, with the reason; nothing is
ever built on a constrained host or on the operator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nixify.cache.config import (
    DEFAULT_CONFIG_KEY,
    IDENTITY_FILE_KEY,
    load_cache_config,
    signing_key_for,
)
from nixify.cache.pool import (
    BuildOutcome,
    BuildPool,
    close_masters,
    host_data_model,
    nix_error,
    source_archive,
    ssh,
)
from nixify.errors import ConfigError
from nixify.pipeline.options import RunOptions

__all__ = [
    "BuildCoordinator",
    "BuildOutcome",
    "close_masters",
    "host_data_model",
    "nix_error",
    "source_archive",
    "ssh",
]


class BuildCoordinator(BuildPool):
    """The pool for a pyinfra run: each host asks for its outcome; the first builds
    for every host still active in the run."""

    def __init__(
        self,
        fleet_dir: Path,
        say: Any,
        repo: Path,
        options: RunOptions,
        is_active: Callable[[Any], bool],
    ) -> None:
        super().__init__(fleet_dir, say)
        self.repo = repo
        self.options = options
        self.is_active = is_active
        self._lock = threading.Lock()
        self._done = False

    def outcome(self, state: Any, host: Any) -> BuildOutcome:
        with self._lock:
            if not self._done:
                try:
                    self._build_all(state, host)
                finally:
                    self._done = True
        return self.outcomes.get(host.name) or BuildOutcome(
            host.name, error="was not selected when the builds ran"
        )

    def _cache_data(self, host: Any) -> dict[str, Any]:
        """What the cache configuration is read from: the run's options first, then
        the inventory's data (its secrets directory, its default cache configuration
        and the age identity file that opens the signing key)."""
        data: dict[str, Any] = {
            k: host.data.get(k) for k in (DEFAULT_CONFIG_KEY, IDENTITY_FILE_KEY, "secrets_dir")
        }
        data["cache"] = "on" if self.options.cache else "off"
        if self.options.cache_config is not None:
            data["cache_config"] = str(self.options.cache_config)
        if self.options.secrets_dir is not None:
            data["secrets_dir"] = str(self.options.secrets_dir)
        return data

    def _build_all(self, state: Any, host: Any) -> None:
        active = {h.name: h for h in state.inventory.get_active_hosts() if self.is_active(h)}
        targets = {n: h.data for n, h in active.items()}
        builder_names = sorted({b for d in targets.values() for b in (d.get("builders") or [])})
        builder_data = {b: state.inventory.get_host(b).data for b in builder_names}
        data = self._cache_data(host)
        try:
            self.cache = load_cache_config(data, self.repo)
        except ConfigError as exc:
            for name in targets:
                self.outcomes[name] = BuildOutcome(name, error=f"binary cache: {exc}")
            return
        if self.cache is not None:
            self._signing_key = signing_key_for(self.cache, data, self.repo)
            self.say("cache", f"binary cache {self.cache.url} ({self.cache.source})")
        self.build_all(targets, builder_data)
