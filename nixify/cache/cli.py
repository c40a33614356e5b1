"""``nixify cache``: the fleet's signed binary cache.

    nixify cache warm [--lab | --fleet] [--limit ROLE|HOST]... [--json]
        build every selected host's system on the builder pool, sign and push it
        to the cache, deploy nothing (what CI runs). Exit 1 if any host was
        skipped or failed (each named with the reason).
    nixify cache keygen --name NAME [--secrets-dir DIR]
        a new signing key, written only as the sops file the cache config names
        (encrypted to the recipients .sops.yaml gives it); prints the public key.
    nixify cache lab-setup [--host NAME] [--port N]
        serve a cache from a lab host and enrol every lab host in it.
"""

from __future__ import annotations

import argparse
import json
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from nixify.errors import ConfigError


def _lab_dir(args: argparse.Namespace) -> Path:
    from nixify.lab.state import default_dir

    return Path(args.lab_dir) if args.lab_dir else default_dir()


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
    from nixify import paths
    from nixify.cache.config import load_cache_config, signing_key_for
    from nixify.cache.pool import BuildPool, close_masters

    repo = paths.repo_root()
    hosts_file = paths.hosts_file(repo)
    if args.fleet:
        from nixify.inventory.connect import fleet_groups

        groups = fleet_groups(hosts_file)
    else:
        from nixify.lab.inventory import lab_groups

        groups = lab_groups(hosts_file, _lab_dir(args))
    limits = [p for value in args.limit for p in value.split(",") if p]
    targets = select(groups, limits)
    every = {name: data for hosts in groups.values() for name, data in hosts}
    first = next(iter(targets.values()))
    cache = load_cache_config(first, repo)
    if cache is None:
        raise ConfigError(
            "no binary cache configured (cache.yaml: --data/NIXIFY_CACHE_CONFIG, the lab's "
            "cache.yaml, or inventories/cache.yaml); run `nixify cache lab-setup` for the lab"
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


def _lab_setup(args: argparse.Namespace) -> int:
    from nixify.cache.lab import setup_lab_cache

    config = setup_lab_cache(_lab_dir(args), args.host, args.port)
    print(f"lab cache {config.url} on {config.server_host}; trusted key {config.public_keys[0]}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cache",
        help="the fleet's signed binary cache: warm, keygen, lab-setup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cache_command", metavar="SUBCOMMAND", required=True)

    w = sub.add_parser("warm", help="build the selected hosts on the pool and push (no deploy)")
    where = w.add_mutually_exclusive_group()
    where.add_argument("--lab", action="store_true", help="the running lab (default)")
    where.add_argument("--fleet", action="store_true", help="the real fleet (address map)")
    w.add_argument("--lab-dir", help="the lab's directory (default $NIXIFY_LAB_DIR)")
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

    s = sub.add_parser("lab-setup", help="serve a cache from a lab host, enrol every host")
    s.add_argument("--lab-dir", help="the lab's directory (default $NIXIFY_LAB_DIR)")
    s.add_argument("--host", help="the lab host that serves it (default: a NAS)")
    s.add_argument("--port", type=int, default=5080)
    s.set_defaults(func=_lab_setup)
