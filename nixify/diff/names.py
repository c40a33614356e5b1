"""How Nix names what a store path holds: package name, version, output.

``nix store diff-closures`` groups a closure's paths by package name and
version. It first strips a trailing output name (``-bin``, ``-dev``, ``-lib64``:
a final ``-`` followed by lower-case letters only, or ``lib32``/``lib64``),
then splits the rest with Nix's ``DrvName`` rule: the version starts after the
first ``-`` that is followed by anything but an ASCII letter. ``hello-2.12``
is ``hello`` at ``2.12``; ``hello-world`` is ``hello`` (output ``world``) with
an empty version. The rule is ambiguous by design and we copy its behaviour,
not its code, so that our findings equal Nix's on the same closures.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

_OUTPUT_SUFFIX = re.compile(r"(.*)-([a-z]+|lib32|lib64)", re.DOTALL)
_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class PackageName(NamedTuple):
    """A store path name split the way ``nix store diff-closures`` splits it."""

    name: str
    version: str
    output: str


def split_drv_name(full: str) -> tuple[str, str]:
    """Nix's ``DrvName``: (name, version); version is ``""`` when there is none."""
    for i in range(len(full) - 1):
        if full[i] == "-" and full[i + 1] not in _ASCII_LETTERS:
            return full[:i], full[i + 1 :]
    return full, ""


def split_output(full: str) -> tuple[str, str]:
    """(rest, output): strips a trailing output name, ``""`` when none matched."""
    m = _OUTPUT_SUFFIX.fullmatch(full)
    if m is None:
        return full, ""
    return m.group(1), m.group(2)


@lru_cache(maxsize=65536)
def parse_package_name(path_name: str) -> PackageName:
    """Split a store path's name (without hash) into package, version and output."""
    rest, output = split_output(path_name)
    name, version = split_drv_name(rest)
    return PackageName(name, version, output)
