"""Release names: the tag ``release/<target>/<UTC>-<shortrev>`` and the branch
``release/<target>``, where a target is a role or a single host."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nixify.errors import ConfigError

PREFIX = "release"
_TARGET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_STAMP = re.compile(r"^\d{8}T\d{6}Z$")
_REV = re.compile(r"^[0-9a-f]{4,40}$")


def check_target(target: str) -> str:
    """A target is one ref-name component: a role (``nas``) or a host (``nas-1``)."""
    if (
        not _TARGET.match(target)
        or ".." in target
        or target.endswith(".lock")
        or target.endswith(".")
    ):
        raise ConfigError(
            f"release target {target!r}: must be a role or host name "
            "(letters, digits, '_', '.', '-'; not starting with '.' or '-')"
        )
    return target


def release_branch(target: str) -> str:
    """The per-target pointer: ``release/<target>`` (a branch that only fast-forwards)."""
    return f"{PREFIX}/{check_target(target)}"


def release_tag(target: str, stamp: str, shortrev: str) -> str:
    """``release/<target>/<UTC>-<shortrev>``, e.g. ``release/nas/20261130T041502Z-1a2b3c4``."""
    if not _STAMP.match(stamp):
        raise ConfigError(f"release tag: UTC stamp {stamp!r} is not YYYYMMDDTHHMMSSZ")
    if not _REV.match(shortrev):
        raise ConfigError(f"release tag: short revision {shortrev!r} is not hexadecimal")
    return f"{PREFIX}/{check_target(target)}/{stamp}-{shortrev}"


@dataclass(frozen=True, order=True)
class ReleaseTagName:
    """The parts of a release tag's name (ordering: by target, then time)."""

    target: str
    stamp: str
    shortrev: str

    @property
    def name(self) -> str:
        return f"{PREFIX}/{self.target}/{self.stamp}-{self.shortrev}"


def parse_release_tag(name: str) -> ReleaseTagName | None:
    """The parts of ``name`` if it is a release tag name (``refs/tags/`` allowed), else None."""
    name = name.removeprefix("refs/tags/")
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    stamp, _, rev = parts[2].partition("-")
    if not _TARGET.match(parts[1]) or not _STAMP.match(stamp) or not _REV.match(rev):
        return None
    return ReleaseTagName(parts[1], stamp, rev)
