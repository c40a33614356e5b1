"""A run's options: every ``--data`` key, parsed once into a typed, validated model.

pyinfra hands ``--data key=value`` to every host's data; nixify reads its own
keys from the command line itself, before any connection, so that a typo
(``mdoe=dry``) or a bad value (``keep_pins=abc``) stops the run in one line that
names the key and what is allowed, instead of deploying with a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from nixify.errors import ConfigError
from nixify.util import parse_flag

DEFAULT_KEEP_PINS = 5


class RunKind(StrEnum):
    """Which deploy file runs: the five gates, a rollback, or the status probe."""

    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    STATUS = "status"


class Mode(StrEnum):
    """How far a deploy goes on each host."""

    DRY = "dry"  # gates 1-3, nothing activated
    TEST = "test"  # activate, keep the boot entry
    SWITCH = "switch"  # activate and make it the boot entry
    BOOT = "boot"  # prove activation, switch at the next boot
    PLAN = "plan"  # gates 1-3, nothing activated, no deploy lock (`nixify plan`)

    @property
    def activates(self) -> bool:
        """Gate 4 and 5 run: something is switched on the host."""
        return self not in (Mode.DRY, Mode.PLAN)

    @property
    def takes_lock(self) -> bool:
        """The run takes each host's deploy lock (a plan reads, so it takes none)."""
        return self is not Mode.PLAN

    @property
    def sets_profile(self) -> bool:
        """The system profile (the boot entry) moves to the new closure."""
        return self in (Mode.SWITCH, Mode.BOOT)

    @property
    def keeps_running_system(self) -> bool:
        """The host keeps running its old system until it reboots."""
        return self is Mode.BOOT


# key -> (what it means, the deploy files it applies to)
KEYS: dict[str, tuple[str, tuple[RunKind, ...]]] = {
    "mode": ("dry | test | switch | boot | plan (default switch)",
             (RunKind.DEPLOY, RunKind.ROLLBACK)),
    "expect": ("comma-separated packages or causes the deploy may change", (RunKind.DEPLOY,)),
    "accept_drift": ("yes/no: pass gate 2 despite undeclared changes", (RunKind.DEPLOY,)),
    "keep_pins": ("how many known-good pins each host keeps (>= 1, default 5)",
                  (RunKind.DEPLOY, RunKind.ROLLBACK)),
    "cache": ("on/off: use the configured binary cache", (RunKind.DEPLOY,)),
    "cache_config": ("path of the binary cache configuration", (RunKind.DEPLOY,)),
    "release": ("on/off: tag releases after the run", (RunKind.DEPLOY, RunKind.ROLLBACK)),
    "to": ("rollback target: tag, record, closure or commit", (RunKind.ROLLBACK,)),
    "fleet_dir": ("directory of the fleet's Nix expressions", (RunKind.DEPLOY,)),
    "reports_dir": ("where run reports are written", (RunKind.DEPLOY, RunKind.ROLLBACK)),
    "secrets_dir": ("directory of the sops-encrypted secrets", (RunKind.DEPLOY,)),
    "sops_binary": ("path of sops on the hosts", (RunKind.DEPLOY,)),
    "status_out": ("file the status probe writes", (RunKind.STATUS,)),
    "confirm_timeout": ("seconds an activated host waits for its confirmation before it "
                        "returns to known-good by itself (default 30)",
                        (RunKind.DEPLOY, RunKind.ROLLBACK)),
    "plan": ("a saved plan (nixify plan --out): gate 4 refuses a host whose new closure "
             "is not the planned one", (RunKind.DEPLOY,)),
}


class RunOptions(BaseModel):
    """Every nixify ``--data`` key of one run, typed. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: RunKind = RunKind.DEPLOY
    mode: Mode = Mode.SWITCH
    expect: frozenset[str] = frozenset()
    accept_drift: bool = False
    keep_pins: int = DEFAULT_KEEP_PINS
    cache: bool = True
    cache_config: Path | None = None
    release: bool = True
    to: str | None = None
    fleet_dir: Path | None = None
    reports_dir: Path | None = None
    secrets_dir: Path | None = None
    sops_binary: str | None = None
    status_out: Path | None = None
    confirm_timeout: float | None = None
    plan: Path | None = None

    @classmethod
    def parse(cls, pairs: Mapping[str, str], kind: RunKind | None = None) -> RunOptions:
        """Validate ``--data`` pairs (as typed on the command line) for a ``kind`` run
        (None: a deploy file nixify does not know; every key is allowed)."""
        allowed = sorted(k for k, (_, kinds) in KEYS.items() if kind is None or kind in kinds)
        values: dict[str, Any] = {"kind": kind or RunKind.DEPLOY}
        for key, raw in pairs.items():
            where = f"--data {key}={raw}"
            if key not in KEYS:
                raise ConfigError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")
            if key not in allowed:
                applies = ", ".join(f"{k.value}.py" for k in KEYS[key][1])
                raise ConfigError(f"{where}: applies to {applies} only")
            values[key] = _value(key, raw, where)
        if values.get("mode") is Mode.PLAN and values["kind"] is not RunKind.DEPLOY:
            raise ConfigError(f"--data mode=plan: applies to deploy.py only (a plan is "
                              f"gates 1-3 of a deploy), not {values['kind'].value}.py")
        if values.get("mode") is Mode.PLAN and "plan" in values:
            raise ConfigError("--data plan=...: a saved plan is for a deploy that activates, "
                              "not for another plan (mode=plan)")
        return cls(**values)


def _value(key: str, raw: str, where: str) -> Any:
    text = raw.strip()
    if key == "mode":
        try:
            return Mode(text)
        except ValueError:
            raise ConfigError(
                f"{where}: not a mode (allowed: {', '.join(m.value for m in Mode)})"
            ) from None
    if key == "expect":
        return frozenset(x.strip() for x in text.split(",") if x.strip())
    if key in ("accept_drift", "cache", "release"):
        return parse_flag(text, f"--data {key}")
    if key == "confirm_timeout":
        try:
            seconds = float(text)
        except ValueError:
            seconds = 0.0
        if not 1 <= seconds <= 3600:
            raise ConfigError(f"{where}: must be a number of seconds from 1 to 3600")
        return seconds
    if key == "keep_pins":
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(
                f"{where}: must be a whole number of at least 1 (the newest pin is always kept)"
            )
        return int(text)
    if key in ("cache_config", "fleet_dir", "reports_dir", "secrets_dir", "status_out", "plan"):
        if not text:
            raise ConfigError(f"{where}: needs a path")
        return Path(os.path.expanduser(text))
    if not text:
        raise ConfigError(f"{where}: needs a value")
    return text


def data_pairs(argv: Sequence[str]) -> dict[str, str]:
    """The ``--data key=value`` pairs of a pyinfra command line, as typed."""
    pairs: dict[str, str] = {}
    args = list(argv)
    for i, arg in enumerate(args):
        value = None
        if arg == "--data" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--data="):
            value = arg.split("=", 1)[1]
        if value is None:
            continue
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ConfigError(f"--data {value}: expected key=value")
        pairs[key.strip()] = val
    return pairs


def kind_of(argv: Sequence[str]) -> RunKind | None:
    """Which of nixify's deploy files a pyinfra command line runs (None: another)."""
    names = {f"{k.value}.py": k for k in RunKind}
    for arg in argv:
        kind = names.get(Path(arg).name)
        if kind is not None:
            return kind
    return None


def options_from_argv(argv: Sequence[str]) -> RunOptions:
    return RunOptions.parse(data_pairs(argv), kind_of(argv))
