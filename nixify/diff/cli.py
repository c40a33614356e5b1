"""``nixify diff OLD NEW``: the closure diff (and RCA) from the command line.

OLD and NEW are store paths, profiles or generation links (symlinks are
resolved), or ``HOST:current`` (the host's ``/run/current-system``, read over
ssh; only the closure's path metadata crosses the wire) or ``HOST:/nix/store/…``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from nixify.diff.closure import CURRENT_SYSTEM, Closure, LocalStoreDatabase, query_closure
from nixify.diff.derivations import LazyDerivations
from nixify.diff.drift import DriftPolicy, DriftVerdict
from nixify.diff.rca import RootCauseReport, explain
from nixify.diff.versions import diff_closures
from nixify.errors import ConfigError
from nixify.nix import CommandRunner, LocalRunner, SshRunner, is_store_path, store_path_root
from nixify.paths import repo_root

_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")


DEFAULT_INVENTORY = "inventories/fleet.py"


class HostAccess:
    """How ``HOST:`` is reached: through ``--ssh-config`` when given, else with the
    connection data the pyinfra inventory gives the host (the lab's ssh_config, or
    the fleet's address, port, key and known_hosts), as a deploy reaches it."""

    def __init__(self, ssh_config: str | None = None, inventory: str | None = None) -> None:
        self.ssh_config = ssh_config
        self.inventory = inventory
        self._hosts: dict[str, Any] | None = None

    def inventory_file(self) -> str:
        return self.inventory or os.environ.get("NIXIFY_INVENTORY") or DEFAULT_INVENTORY

    def _inventory_hosts(self) -> dict[str, Any]:
        if self._hosts is None:
            self._hosts = inventory_host_data(self.inventory_file())
        return self._hosts

    def ssh_args(self, host: str) -> list[str]:
        if self.ssh_config:
            return ["-F", self.ssh_config, host]
        hosts = self._inventory_hosts()
        if host not in hosts:
            raise ConfigError(
                f"{host}: not a host of the inventory {self.inventory_file()} "
                f"(hosts: {', '.join(sorted(hosts)) or 'none'}); give --inventory or --ssh-config"
            )
        # imported here, not at the top, for start-up time: the inventory package loads
        # pydantic, yaml and the fleet model, which only a HOST: spec needs (bench/startup.py)
        from nixify.inventory import ssh_args_from_data

        return ssh_args_from_data(host, hosts[host])


def inventory_host_data(inventory: str) -> dict[str, Any]:
    """host -> its pyinfra data, as the inventory file gives it (run from the project)."""
    # imported here for start-up time, as ssh_args_from_data above
    from nixify.inventory.listing import list_inventory

    try:
        hosts = list_inventory(inventory, repo_root())
    except ConfigError as exc:
        raise ConfigError(f"{exc} (or give --ssh-config FILE)") from None
    return {h.name: h.data for h in hosts}


def ssh_runner(host: str, access: HostAccess | str | None) -> SshRunner:
    """An ``SshRunner`` for ``host``: through an ssh config file, or ``access``."""
    if not _HOST.fullmatch(host):
        # Never hand ssh something it could read as an option (-oProxyCommand=...).
        raise ConfigError(f"{host!r} is not a host name")
    if not isinstance(access, HostAccess):
        access = HostAccess(ssh_config=access) if access else None
    args = access.ssh_args(host) if access is not None else [host]
    return SshRunner(host, args)


def _remote_spec(spec: str) -> tuple[str, str] | None:
    """(host, path) of ``HOST:PATH``; None for a local path."""
    if spec.startswith(("/", ".")) or ":" not in spec:
        return None
    host, _, rest = spec.partition(":")
    if not _HOST.fullmatch(host):
        # Never hand ssh something it could read as an option (-oProxyCommand=...).
        raise ConfigError(
            f"{spec}: {host!r} is not a host name (HOST:current, HOST:/nix/store/...)"
        )
    return host, rest


def resolve_local(spec: str) -> str:
    """The store path that ``spec`` (a store path, profile or generation link) names."""
    if not os.path.lexists(spec):
        hint = " (garbage-collected?)" if is_store_path(spec) else ""
        raise ConfigError(f"{spec}: does not exist{hint}")
    real = os.path.realpath(spec)
    if not is_store_path(real):
        raise ConfigError(f"{spec}: not a Nix store path (resolves to {real})")
    if not os.path.exists(real):
        raise ConfigError(f"{spec}: points to {real}, which does not exist (garbage-collected?)")
    return store_path_root(real)


def remote_path(rest: str) -> str:
    """The path ``HOST:REST`` names on the host: ``current`` is the running system."""
    return CURRENT_SYSTEM if rest in ("current", "") else rest


def load_closure(
    spec: str, ssh_config: HostAccess | str | None = None, use_db: bool = True
) -> Closure:
    """Resolve ``spec`` and read its closure (locally from the database when possible)."""
    remote = _remote_spec(spec)
    if remote is not None:
        host, rest = remote
        # One round trip: the host resolves the link and prints the closure.
        return query_closure(ssh_runner(host, ssh_config), remote_path(rest))
    path = resolve_local(spec)
    db = LocalStoreDatabase.open() if use_db else None
    if db is None:
        return query_closure(LocalRunner(), path)
    try:
        return db.query_closure(path)
    finally:
        db.close()


def derivation_source(
    drvs_from: str | None, ssh_config: HostAccess | str | None
) -> LazyDerivations:
    """Derivations on ``drvs_from`` (a builder) or here, read as the RCA walk needs them."""
    runner: CommandRunner = ssh_runner(drvs_from, ssh_config) if drvs_from else LocalRunner()
    return LazyDerivations(runner)


def _run(args: argparse.Namespace) -> int:
    access = HostAccess(args.ssh_config, args.inventory)
    old = load_closure(args.old, access, not args.no_db)
    new = load_closure(args.new, access, not args.no_db)
    diff = diff_closures(old, new)
    if args.nix_style:
        sys.stdout.write(diff.render_nix_style())
        return 0
    rca: RootCauseReport | None = None
    if args.rca or args.expect:
        rca = explain(diff, derivation_source(args.drvs_from, access))
    verdict: DriftVerdict | None = None
    if args.expect or args.accept_drift:
        expected = frozenset(x for e in args.expect for x in e.split(",") if x)
        verdict = DriftPolicy(expected, args.accept_drift).check(diff, rca)
    if args.json:
        out: dict[str, Any] = diff.to_json()
        if rca is not None:
            out["rca"] = rca.to_json()
        if verdict is not None:
            out["drift"] = {
                "ok": verdict.ok,
                "unexpected": list(verdict.unexpected),
                "message": verdict.message,
            }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(diff.render(color=sys.stdout.isatty()))
        if rca is not None:
            sys.stdout.write("\n" + rca.render())
        if verdict is not None:
            sys.stdout.write(f"\nDrift: {'ok' if verdict.ok else 'FAIL'}: {verdict.message}\n")
    return 0 if verdict is None or verdict.ok else 1


_DESCRIPTION = """\
Compare two closures: package versions (as `nix store diff-closures` groups
them), added and removed packages, rebuilds, sizes; with --rca, the root cause
of every change, from the derivations.

OLD and NEW are store paths, profiles or generation links (resolved), or
HOST:current (the host's /run/current-system) or HOST:PATH, read over ssh:
only the closure's path metadata crosses the wire. A host is reached as a
deploy reaches it, with the inventory's connection data (--inventory, default
$NIXIFY_INVENTORY or inventories/fleet.py; the lab's inventories/lab.py uses
the lab's ssh_config), or through --ssh-config FILE.

Exit status: 0, or 1 when --expect is given and something else changed,
2 on bad input (a path that is not in the store, does not exist, or was
garbage-collected)."""


def register(subparsers: Any) -> None:
    """Add ``nixify diff`` to the ``nixify`` command line."""
    p = subparsers.add_parser(
        "diff",
        help="compare two closures: versions, sizes, and (--rca) the root causes",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("old", metavar="OLD", help="store path, profile/generation link, HOST:current")
    p.add_argument("new", metavar="NEW", help="store path, profile/generation link, HOST:current")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--rca", action="store_true", help="explain every change by its derivations")
    p.add_argument(
        "--inventory",
        metavar="FILE",
        help="pyinfra inventory whose connection data reaches HOST "
        f"(default: $NIXIFY_INVENTORY or {DEFAULT_INVENTORY})",
    )
    p.add_argument(
        "--ssh-config", metavar="FILE", help="reach HOST through this ssh config (-F) instead"
    )
    p.add_argument(
        "--drvs-from", metavar="HOST", help="with --rca: read .drv files on HOST (a builder)"
    )
    p.add_argument(
        "--expect",
        metavar="NAME",
        action="append",
        default=[],
        help="a package, derivation or cause label this change is meant to touch "
        "(repeatable, comma-separated); anything else fails (exit 1)",
    )
    p.add_argument("--accept-drift", action="store_true", help="pass despite unexpected changes")
    p.add_argument("--no-db", action="store_true", help="query via `nix path-info`, not the DB")
    p.add_argument(
        "--nix-style", action="store_true", help="print what `nix store diff-closures` prints"
    )
    p.set_defaults(func=_run)
