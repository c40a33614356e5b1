"""Derivations (``.drv``) as the RCA reads them, gathered where they live.

The builder keeps the ``.drv`` files; a target usually has only the outputs.
So the query is separate from the closure query and may run on another host:

- ``derivations_query_command(drvs)`` is an argv that reports which of
  ``drvs`` are absent and prints the present ones, with every derivation they
  depend on, through ``nix show-derivation --recursive`` (JSON);
- ``parse_derivations(text)`` turns that output into a ``DerivationSet``;
- ``query_derivations(runner, drvs)`` does both through a ``CommandRunner``.

``LazyDerivations(runner)`` asks for derivations only as the RCA walk needs
them, one batch per level of the walk, without ``--recursive``: a real
system's derivation graph is thousands of ``.drv``s, and the walk only
descends where something changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from nixify.diff.closure import NIX_QUERY_FLAGS
from nixify.errors import ConfigError
from nixify.nix import CommandRunner, is_store_path, store_path_name

_MISSING = "missing\t"
_SEPARATOR = "--- nixify derivations ---"

# POSIX sh: report the absent .drv files, then print the present ones. Only
# when some are absent does it rebuild "$@" without them (quadratic in dash,
# so not on the common path).
_QUERY_SCRIPT = f"""
absent=0
for d do [ -e "$d" ] || {{ printf '{_MISSING}%s\\n' "$d"; absent=1; }}; done
echo '{_SEPARATOR}'
if [ "$absent" = 1 ]; then
  for d do shift; if [ -e "$d" ]; then set -- "$@" "$d"; fi; done
fi
if [ "$#" -eq 0 ]; then echo '{{}}'; exit 0; fi
exec nix {" ".join(NIX_QUERY_FLAGS)} show-derivation RECURSIVE "$@"
"""
# Paths per command: the remote shell gets the whole command as one string,
# which Linux caps at 128 KiB.
BATCH = 1000


@dataclass(frozen=True, slots=True)
class Derivation:
    """One store derivation, as ``nix show-derivation`` describes it."""

    path: str
    outputs: Mapping[str, str]  # output name -> output path
    input_drvs: Mapping[str, tuple[str, ...]]  # .drv path -> output names used
    input_srcs: tuple[str, ...]
    system: str
    builder: str
    args: tuple[str, ...]
    env: Mapping[str, str]

    @property
    def name(self) -> str:
        """The derivation's name: ``hello-2.12`` of ``/nix/store/<hash>-hello-2.12.drv``."""
        n = store_path_name(self.path)
        return n[:-4] if n.endswith(".drv") else n

    @property
    def is_fixed_output(self) -> bool:
        return "outputHash" in self.env


@dataclass(frozen=True)
class DerivationSet:
    """Derivations read from one store; ``missing`` are asked-for ``.drv``s it lacks."""

    drvs: Mapping[str, Derivation] = field(default_factory=dict)
    missing: frozenset[str] = frozenset()
    source: str = "local"

    def __contains__(self, path: object) -> bool:
        return path in self.drvs

    def get(self, path: str) -> Derivation | None:
        return self.drvs.get(path)

    def ensure(self, paths: Iterable[str]) -> None:
        """Nothing to fetch: the set holds all it will ever hold."""

    def merged(self, other: DerivationSet) -> DerivationSet:
        """Both sets; a path missing in one and present in the other is present."""
        drvs = {**self.drvs, **other.drvs}
        missing = (self.missing | other.missing) - drvs.keys()
        return DerivationSet(drvs, frozenset(missing), f"{self.source}+{other.source}")


def derivations_query_command(drvs: Iterable[str], recursive: bool = True) -> list[str]:
    """The argv that prints ``drvs`` (and, if ``recursive``, all they depend on) as JSON."""
    paths = list(dict.fromkeys(drvs))
    for p in paths:
        if not is_store_path(p) or not p.endswith(".drv"):
            raise ConfigError(f"derivation query: {p!r} is not a store derivation (.drv)")
    script = _QUERY_SCRIPT.replace("RECURSIVE", "--recursive" if recursive else "")
    return ["sh", "-c", script, "nixify-derivations", *paths]


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of strings")
    return tuple(value)


def _derivation(path: str, data: Any, source: str) -> Derivation:
    where = f"{source}: {path}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object")
    outputs: dict[str, str] = {}
    for name, out in (data.get("outputs") or {}).items():
        outputs[name] = out.get("path", "") if isinstance(out, dict) else ""
    input_drvs = {
        drv: _strings(outs, f"{where}: inputDrvs")
        for drv, outs in (data.get("inputDrvs") or {}).items()
    }
    env = data.get("env") or {}
    if not isinstance(env, dict):
        raise ConfigError(f"{where}: env is not an object")
    return Derivation(
        path=path,
        outputs=outputs,
        input_drvs=input_drvs,
        input_srcs=_strings(data.get("inputSrcs", []), f"{where}: inputSrcs"),
        system=str(data.get("system", data.get("platform", ""))),
        builder=str(data.get("builder", "")),
        args=_strings(data.get("args", []), f"{where}: args"),
        env={str(k): str(v) for k, v in env.items()},
    )


def parse_derivations(text: str, source: str = "local") -> DerivationSet:
    """Parse ``derivations_query_command``'s output (or plain ``show-derivation`` JSON)."""
    missing: set[str] = set()
    body = text
    if _SEPARATOR in text:
        head, _, body = text.partition(_SEPARATOR)
        for line in head.splitlines():
            if line.startswith(_MISSING):
                missing.add(line[len(_MISSING) :])
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: `nix show-derivation` output is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object from `nix show-derivation`")
    drvs = {path: _derivation(path, d, source) for path, d in data.items()}
    return DerivationSet(drvs, frozenset(missing - drvs.keys()), source)


def query_derivations(runner: CommandRunner, drvs: Iterable[str]) -> DerivationSet:
    """Run the derivation query through ``runner`` and parse it."""
    paths = list(drvs)
    if not paths:
        return DerivationSet(source=runner.name)
    proc = runner.run(derivations_query_command(paths))
    return parse_derivations(proc.stdout.decode(), runner.name)


class DerivationSource(Protocol):
    """Where the RCA reads derivations: a ``DerivationSet`` or ``LazyDerivations``."""

    @property
    def source(self) -> str: ...

    @property
    def missing(self) -> frozenset[str]: ...

    def get(self, path: str) -> Derivation | None: ...

    def ensure(self, paths: Iterable[str]) -> None: ...


class LazyDerivations:
    """Derivations read through ``runner`` on demand, in batches (one per ``ensure``)."""

    def __init__(self, runner: CommandRunner) -> None:
        self._runner = runner
        self._drvs: dict[str, Derivation] = {}
        self._missing: set[str] = set()
        self.round_trips = 0
        self.bytes_read = 0

    @property
    def source(self) -> str:
        return self._runner.name

    @property
    def missing(self) -> frozenset[str]:
        return frozenset(self._missing)

    @property
    def fetched(self) -> int:
        """How many derivations were read so far."""
        return len(self._drvs)

    def ensure(self, paths: Iterable[str]) -> None:
        wanted = [
            p
            for p in dict.fromkeys(paths)
            if p not in self._drvs and p not in self._missing and p.endswith(".drv")
        ]
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start : start + BATCH]
            proc = self._runner.run(derivations_query_command(chunk, recursive=False))
            self.round_trips += 1
            self.bytes_read += len(proc.stdout)
            got = parse_derivations(proc.stdout.decode(), self._runner.name)
            self._drvs.update(got.drvs)
            self._missing.update(p for p in chunk if p not in got.drvs)

    def get(self, path: str) -> Derivation | None:
        if path not in self._drvs and path not in self._missing:
            self.ensure([path])
        return self._drvs.get(path)
