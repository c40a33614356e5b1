"""``nixify cache``: the fleet's signed binary cache.

    nixify cache warm [--inventory FILE] [--limit ROLE|HOST]... [--json]
        build every selected host's system on the builder pool, sign and push it
        to the cache, deploy nothing (what CI runs). The hosts and their data come
        from the pyinfra inventory (default: $NIXIFY_INVENTORY or
        inventories/fleet.py). Exit 1 if any host was skipped or failed (each
        named with the reason).
    nixify cache keygen --name NAME [--secrets-dir DIR]
        a new signing key, written only as the sops file the cache config names
        (encrypted to the recipients .sops.yaml gives it); prints the public key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from nixify.errors import ConfigError
from nixify.inventory.listing import inventory_groups

DEFAULT_INVENTORY = "inventories/fleet.py"


def select(
    groups: dict[str, list[tuple[str, dict[str, Any]]]], limits: list[str]
) -> dict[str, dict[str, Any]]:
    """Hosts matching any ``--limit`` (a role first, then a host glob); all without one."""
    every = {name: data for hosts in groups.values() for name, data in hosts}
    if not limits:
        return every
    chosen: dict[str, dict[str, Any]] = {}
    for pattern in limits:
        if pattern in groups:
            hits = dict(groups[pattern])
        else:
            hits = {n: d for n, d in every.items() if fnmatch(n, pattern)}
        if not hits:
            raise ConfigError(f"--limit {pattern}: matches no role or host")
        chosen.update(hits)
    return chosen


def _warm(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: start-up time of the CLI (`nixify cache --help`).
    from nixify import paths
    from nixify.cache.config import load_cache_config, signing_key_for
    from nixify.cache.pool import BuildPool, close_masters

    repo = paths.repo_root()
    inventory = args.inventory or os.environ.get("NIXIFY_INVENTORY") or DEFAULT_INVENTORY
    groups = inventory_groups(inventory, repo)  # as pyinfra loads it
    if not groups:
        raise ConfigError(f"--inventory {inventory}: no hosts")
    limits = [p for value in args.limit for p in value.split(",") if p]
    targets = select(groups, limits)
    every = {name: data for hosts in groups.values() for name, data in hosts}
    first = next(iter(targets.values()))
    cache = load_cache_config(first, repo)
    if cache is None:
        raise ConfigError(
            "no binary cache configured (cache.yaml: NIXIFY_CACHE_CONFIG, the inventory's "
            "default_cache_config, or inventories/cache.yaml)"
        )
    builders = sorted({b for d in targets.values() for b in d.get("builders") or []})
    missing = [b for b in builders if b not in every]
    if missing:
        raise ConfigError(f"builder {missing[0]!r} is not in the inventory")

    def say(who: str, message: str) -> None:
        print(f"[{who}] {message}", file=sys.stderr, flush=True)

    pool = BuildPool(
        Path(args.fleet_dir) if args.fleet_dir else paths.fleet_dir(repo),
        say,
        cache,
        signing_key_for(cache, first, repo),
    )
    try:
        outcomes = pool.build_all(targets, {b: every[b] for b in builders}, deliver=False)
    finally:
        close_masters()
    failed = 0
    rows = []
    for name in sorted(outcomes):
        o = outcomes[name]
        ok = o.pushed and not o.error
        failed += 0 if ok else 1
        state = "pushed" if ok else ("skipped" if o.skipped else "failed")
        rows.append(
            {
                "host": name,
                "status": state,
                "builder": o.builder,
                "closure": o.closure,
                "reason": o.error,
            }
        )
    if args.json:
        doc = {
            "cache": cache.url,
            "hosts": rows,
            "placement": pool.placement,
        }
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        for r in rows:
            detail = r["closure"] if r["status"] == "pushed" else r["reason"]
            print(f"{r['host']:<20} {r['status']:<8} {r['builder'] or '-':<16} {detail}")
        per: dict[str, int] = {}
        for b in pool.placement.values():
            per[b] = per.get(b, 0) + 1
        built = ", ".join(f"{n} on {b}" for b, n in sorted(per.items())) or "none"
        print(
            f"cache {cache.url}: {len(rows) - failed}/{len(rows)} pushed; derivations built: "
            f"{built}"
        )
    return 1 if failed else 0


def _keygen(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: start-up time of the CLI.
    from nixify import paths
    from nixify.cache.keys import (
        DEFAULT_SECRET,
        generate_signing_key,
        recipients_for,
        write_key_secret,
    )

    secrets_dir = Path(args.secrets_dir) if args.secrets_dir else paths.repo_root() / "secrets"
    relpath = args.secret or DEFAULT_SECRET
    target = secrets_dir / relpath
    if target.exists() and not args.force:
        raise ConfigError(f"{target}: exists; --force to replace the signing key")
    recipients = recipients_for(secrets_dir, relpath)
    key = generate_signing_key(args.name)
    write_key_secret(target, key, recipients)
    print(f"wrote {target} (sops, {len(recipients)} recipient(s))", file=sys.stderr)
    print(key.public)
    return 0


def register(subparsers: Any) -> dict[str, Any]:
    """Add ``cache``; returns ``{"cache": its subcommands}`` so that another command
    module can add subcommands of its own."""
    p = subparsers.add_parser(
        "cache",
        help="the fleet's signed binary cache: warm, keygen, ...",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cache_command", metavar="SUBCOMMAND", required=True)

    w = sub.add_parser("warm", help="build the selected hosts on the pool and push (no deploy)")
    w.add_argument(
        "--inventory", "-i", default=None,
        help=f"pyinfra inventory (default: $NIXIFY_INVENTORY or {DEFAULT_INVENTORY})",
    )
    w.add_argument("--limit", action="append", default=[], help="role or host glob")
    w.add_argument("--fleet-dir", help="the Nix sources (default: the project's fleet/)")
    w.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    w.set_defaults(func=_warm)

    k = sub.add_parser("keygen", help="a new signing key, kept only as a sops file")
    k.add_argument("--name", required=True, help="key name, e.g. fleet-cache-1")
    k.add_argument("--secrets-dir", help="default: the project's secrets/")
    k.add_argument("--secret", help="relative path of the sops file (default builders/...)")
    k.add_argument("--force", action="store_true", help="replace an existing key")
    k.set_defaults(func=_keygen)
    return {"cache": sub}
