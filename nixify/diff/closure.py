"""A closure: every store path a root needs, with the facts the diff uses.

Gathering is split from computing so that a pyinfra fact can run the command
on a host and hand its stdout to ``parse_closure_query``:

- ``closure_query_command(path)`` is the argv (``nix path-info --json
  --recursive``; Nix 2.8 prints a JSON list of objects with ``path``,
  ``narSize``, ``references``, ``deriver`` and, for an invalid path,
  ``"valid": false``);
- ``parse_closure_query(text, root)`` turns that output into a ``Closure``;
- ``query_closure(runner, path)`` does both through a ``CommandRunner``.

On the operator's own machine ``LocalStoreDatabase`` reads the same facts
straight from Nix's SQLite database, read-only, in one recursive query.
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from nixify.errors import ConfigError, RemoteError
from nixify.nix import CommandRunner, is_store_path, store_path_root

NIX_DB = "/nix/var/nix/db/db.sqlite"

# Flags every `nix` query gets: the new CLI on whatever the host's nix.conf
# says, and no substituter lookups (a missing path must not touch the network).
NIX_QUERY_FLAGS: tuple[str, ...] = ("--extra-experimental-features", "nix-command", "--offline")


@dataclass(frozen=True, slots=True)
class PathInfo:
    """One valid store path: its NAR size, references and deriver (if recorded)."""

    path: str
    nar_size: int
    references: tuple[str, ...] = ()
    deriver: str | None = None


@dataclass(frozen=True)
class Closure:
    """The closure of ``root``: path -> ``PathInfo``; ``source`` says where it was read."""

    root: str
    paths: Mapping[str, PathInfo]
    source: str = "local"

    def __post_init__(self) -> None:
        if self.root not in self.paths:
            raise ConfigError(f"{self.source}: closure of {self.root} does not contain its root")

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __contains__(self, path: object) -> bool:
        return path in self.paths

    @property
    def nar_size(self) -> int:
        """Total NAR size of the closure in bytes."""
        return sum(info.nar_size for info in self.paths.values())

    def derivers(self) -> dict[str, str]:
        """Output path -> deriver, for the paths that record one."""
        return {p: i.deriver for p, i in self.paths.items() if i.deriver}


def _check_store_path(path: str, where: str) -> None:
    if not is_store_path(path) or store_path_root(path) != path:
        raise ConfigError(f"{where}: {path!r} is not a Nix store path (/nix/store/<hash>-<name>)")


CURRENT_SYSTEM = "/run/current-system"
_NOT_FOUND = 3  # exit status of the query script when the link does not resolve
_NOT_STORE = 4  # ... and when it resolves outside the store

# For a link (a profile, a generation, /run/current-system): resolve it on the
# host, print the store path it names, then that path's closure.
_LINK_QUERY_SCRIPT = f"""
p=$(readlink -e -- "$1") || {{ printf 'nixify: %s does not exist\\n' "$1" >&2; exit {_NOT_FOUND}; }}
case "$p" in
  /nix/store/*) ;;
  *) printf 'nixify: %s resolves to %s\\n' "$1" "$p" >&2; exit {_NOT_STORE};;
esac
printf '%s\\n' "$p"
exec nix {" ".join(NIX_QUERY_FLAGS)} path-info --json --recursive "$p"
"""


def closure_query_command(path: str) -> list[str]:
    """The argv that prints the closure of ``path`` as JSON (Nix >= 2.4).

    ``path`` is a store path, or an absolute link to one (``/run/current-system``,
    a profile): then the command resolves it on the host first and prints the
    store path on a line of its own before the JSON, all in one round trip.
    """
    if is_store_path(path) and store_path_root(path) == path:
        return ["nix", *NIX_QUERY_FLAGS, "path-info", "--json", "--recursive", path]
    if not path.startswith("/") or "\n" in path:
        raise ConfigError(f"closure query: {path!r} is neither a store path nor an absolute link")
    return ["sh", "-c", _LINK_QUERY_SCRIPT, "nixify-closure", path]


def parse_closure_query(text: str, root: str, source: str = "local") -> Closure:
    """Parse ``closure_query_command``'s output into the ``Closure`` of ``root``.

    When the output starts with the store path a link resolved to, that path
    is the root. A root that Nix reports as not valid (garbage-collected, never
    registered) is a ``ConfigError`` naming it; so is output that is not the
    expected JSON.
    """
    if text.startswith("/"):
        resolved, _, text = text.partition("\n")
        if not is_store_path(resolved):
            raise ConfigError(f"{source}: {root} is not a Nix store path (resolves to {resolved})")
        root = store_path_root(resolved)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source}: closure of {root}: `nix path-info` output is not JSON: {exc}"
        ) from None
    if not isinstance(data, list):
        raise ConfigError(f"{source}: closure of {root}: expected a JSON list from `nix path-info`")
    paths: dict[str, PathInfo] = {}
    for entry in data:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ConfigError(f"{source}: closure of {root}: entry without a `path` field")
        path = entry["path"]
        if entry.get("valid") is False:
            raise ConfigError(
                f"{source}: {path} is not valid in the store (garbage-collected or never built)"
            )
        nar_size = entry.get("narSize", 0)
        refs = entry.get("references", [])
        deriver = entry.get("deriver")
        if not isinstance(nar_size, int) or not isinstance(refs, list):
            raise ConfigError(f"{source}: {path}: bad `narSize` or `references` field")
        paths[path] = PathInfo(
            path, nar_size, tuple(refs), deriver if isinstance(deriver, str) and deriver else None
        )
    if root not in paths:
        raise ConfigError(f"{source}: {root} is not in the closure Nix reported (not valid?)")
    return Closure(root, paths, source)


def query_closure(runner: CommandRunner, path: str) -> Closure:
    """Run the closure query through ``runner`` and parse it (``path`` as for the command)."""
    argv = closure_query_command(path)
    proc = runner.run(argv, check=False)
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace")
        if proc.returncode == _NOT_FOUND and argv[0] == "sh":
            raise ConfigError(f"{runner.name}: {path} does not exist (garbage-collected?)")
        if proc.returncode == _NOT_STORE and argv[0] == "sh":
            where = stderr.strip().rpartition(" resolves to ")[2]
            raise ConfigError(
                f"{runner.name}: {path} is not a Nix store path (resolves to {where})"
            )
        if "is not valid" in stderr:
            raise ConfigError(
                f"{runner.name}: {path} is not valid in the store"
                " (garbage-collected or never built)"
            )
        shown = shlex.join(argv) if argv[0] == "nix" else f"nix path-info --recursive {path}"
        raise RemoteError(runner.name, shown, proc.returncode, stderr)
    return parse_closure_query(proc.stdout.decode(), path, runner.name)


class LocalStoreDatabase:
    """Read-only access to this machine's Nix database (the fast local path)."""

    def __init__(self, db_path: str = NIX_DB) -> None:
        self.db_path = db_path
        try:
            self._conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
            self._conn.execute("SELECT 1 FROM ValidPaths LIMIT 1")
        except sqlite3.Error as exc:
            raise ConfigError(f"{db_path}: cannot read the Nix database: {exc}") from None

    @classmethod
    def available(cls, db_path: str = NIX_DB) -> bool:
        """True when this process's Nix store is the local one and its database is readable."""
        remote = os.environ.get("NIX_REMOTE", "")
        return remote in ("", "local", "daemon", "auto") and os.access(db_path, os.R_OK)

    @classmethod
    def open(cls, db_path: str = NIX_DB) -> LocalStoreDatabase | None:
        """The database, or None when only ``nix`` itself can answer (then use the command)."""
        if not cls.available(db_path):
            return None
        try:
            return cls(db_path)
        except ConfigError:
            return None

    def close(self) -> None:
        self._conn.close()

    def is_valid(self, path: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM ValidPaths WHERE path = ?", (path,)).fetchone()
        return row is not None

    def query_closure(self, path: str, with_references: bool = False) -> Closure:
        """The closure of ``path``; ``ConfigError`` when it is not valid."""
        _check_store_path(path, self.db_path)
        if not self.is_valid(path):
            raise ConfigError(
                f"{path} is not valid in the store (garbage-collected or never built)"
            )
        cur = self._conn.execute(
            """
            WITH RECURSIVE closure(id) AS (
                SELECT id FROM ValidPaths WHERE path = ?
                UNION
                SELECT r.reference FROM Refs r JOIN closure c ON r.referrer = c.id
            )
            SELECT v.id, v.path, v.narSize, v.deriver FROM ValidPaths v JOIN closure c USING (id)
            """,
            (path,),
        )
        rows = cur.fetchall()
        refs: dict[int, list[str]] = {}
        if with_references:
            by_id = {row[0]: row[1] for row in rows}
            ids = list(by_id)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for referrer, reference in self._conn.execute(
                    f"SELECT referrer, reference FROM Refs WHERE referrer IN ({marks})", chunk
                ):
                    refs.setdefault(referrer, []).append(by_id[reference])
        paths = {
            p: PathInfo(p, size or 0, tuple(sorted(refs.get(i, ()))), drv or None)
            for i, p, size, drv in rows
        }
        return Closure(path, paths, "local")
