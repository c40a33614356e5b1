"""Build synthetic closures (``closure.nix``) with ``nix-build`` for the diff tests."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from nixify.nix import nix_environ

HERE = Path(__file__).resolve().parent
CLOSURE_NIX = HERE / "closure.nix"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def nix_value(value: Any) -> str:
    """A Python value (dict, list, str, int, bool, None) as a Nix expression."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value).replace("${", "\\${")
    if isinstance(value, list):
        return "[ " + " ".join(f"({nix_value(v)})" for v in value) + " ]"
    if isinstance(value, dict):
        return (
            "{ " + " ".join(f"{json.dumps(k)} = {nix_value(v)};" for k, v in value.items()) + " }"
        )
    raise TypeError(f"no Nix value for {value!r}")


def build(packages: list[dict[str, Any]], **extra: Any) -> str:
    """Build the closure of ``packages``; returns the root store path."""
    args = ["--arg", "packages", nix_value(packages)]
    for key, value in extra.items():
        args += ["--arg", key, nix_value(value)]
    proc = subprocess.run(
        ["nix-build", str(CLOSURE_NIX), "--no-out-link", *args],
        capture_output=True,
        text=True,
        env=nix_environ(),
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nix-build failed: {proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def nix_diff_closures(old: str, new: str) -> str:
    """What ``nix store diff-closures OLD NEW`` prints, colour codes removed."""
    proc = subprocess.run(
        ["nix", "store", "diff-closures", old, new],
        capture_output=True,
        text=True,
        env=nix_environ(),
        check=True,
    )
    return _ANSI.sub("", proc.stdout)


_LINE = re.compile(r"^(?P<name>[^:]*): (?P<arrow>\S.*? → .*?)(?:, [+-]\d+\.\d KiB)?$")


def parse_nix_findings(text: str) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """name -> (removed, added) versions from diff-closures' ``name: A → B`` lines."""

    def versions(part: str) -> tuple[str, ...]:
        if part == "∅":
            return ()
        return tuple(sorted("" if v == "ε" else v for v in part.split(", ")))

    out: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        old, _, new = m.group("arrow").partition(" → ")
        out[m.group("name")] = (versions(old), versions(new))
    return out
