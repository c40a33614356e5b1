"""Benchmark: gate 1 (build + deliver) with the signed cache against direct copies.

Each trial bumps one package every host carries (node-exporter) to a new
version, so every host's system changes, then measures on a lab of N hosts:

* baseline ``direct-copy`` (no cache, the pipeline's behaviour without one):
  the builders build and ``nix copy`` each closure to each target over SSH;
* ``cache-warm``: what CI runs, ``BuildPool`` building on the pool, signing and
  pushing to the lab cache (HTTP on a lab host), delivering to nobody;
* ``cache-deploy``: gate 1 of the deploy that follows: evaluation on the
  builders finds everything built, each target substitutes its closure from
  the cache (signature checked).

Prints each wall and the ratios ``cache-deploy / direct-copy`` (what a deploy
costs once CI has warmed the cache) and ``(warm + deploy) / direct-copy``.
Both sides go through the same ``BuildPool`` code, so the difference is the
delivery path and the builds the deploy no longer does.

    .venv/bin/python bench/cache.py [--hosts 15] [--trials 2]

Needs root (the lab). Uses its own lab on 127.0.53.x, taken down at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nixify.cache.config import read_cache_config, signing_key_for  # noqa: E402
from nixify.cache.pool import BuildPool, close_masters  # noqa: E402
from nixify.inventory import load_fleet  # noqa: E402
from nixify.lab import control  # noqa: E402
from nixify.lab.cache import setup_lab_cache  # noqa: E402
from nixify.lab.inventory import lab_groups  # noqa: E402

NET = "127.0.53"


def quiet(_who: str, _msg: str) -> None:
    pass


def bump(fleet_dir: Path, version: str) -> None:
    pkgs = fleet_dir / "packages.nix"
    text = pkgs.read_text()
    mark = 'pname = "node-exporter"; version = "'
    start = text.index(mark) + len(mark)
    end = text.index('"', start)
    pkgs.write_text(text[:start] + version + text[end:])


def timed(pool: BuildPool, targets: dict[str, Any], builders: dict[str, Any],
          deliver: bool) -> float:
    started = time.monotonic()
    outcomes = pool.build_all(targets, builders, deliver=deliver)
    wall = time.monotonic() - started
    bad = {n: o.error for n, o in outcomes.items() if o.error}
    if bad:
        raise SystemExit(f"bench: hosts failed: {bad}")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=15)
    parser.add_argument("--trials", type=int, default=3)
    opts = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/cache.py needs root (the lab)")
    labdir = Path(tempfile.mkdtemp(prefix="nixify-bench-cache-"))
    fleet_dir = Path(tempfile.mkdtemp(prefix="nixify-bench-fleet-")) / "fleet"
    shutil.copytree(REPO / "fleet", fleet_dir)
    hosts_file = REPO / "inventories" / "hosts.yaml"
    try:
        control.up(load_fleet(hosts_file), opts.hosts, labdir, NET, 2222, REPO / "fleet")
        setup_lab_cache(labdir)
        cache = read_cache_config(labdir / "cache.yaml")
        groups = lab_groups(hosts_file, labdir)
        targets = {n: d for hosts in groups.values() for n, d in hosts}
        builders = {b: targets[b] for b in sorted({b for d in targets.values()
                                                    for b in d["builders"]})}
        key = signing_key_for(cache, next(iter(targets.values())))
        direct, warm, deploy = [], [], []
        for trial in range(opts.trials):
            bump(fleet_dir, f"1.9.{trial * 2 + 1}")
            direct.append(timed(BuildPool(fleet_dir, quiet), targets, builders, True))
            bump(fleet_dir, f"1.9.{trial * 2 + 2}")
            warm.append(timed(BuildPool(fleet_dir, quiet, cache, key), targets, builders, False))
            deploy.append(timed(BuildPool(fleet_dir, quiet, cache, key), targets, builders, True))
        close_masters()
        d, w, c = min(direct), min(warm), min(deploy)
        print(f"hosts: {opts.hosts}, one-package change on every host (node-exporter), "
              f"best of {opts.trials} trials; gate 1 = build + deliver")
        print(f"  baseline direct-copy   wall {d:7.2f}s  {[round(t, 2) for t in direct]}")
        print(f"  cache-warm (CI)        wall {w:7.2f}s  {[round(t, 2) for t in warm]}")
        print(f"  cache-deploy           wall {c:7.2f}s  {[round(t, 2) for t in deploy]}")
        print(f"  ratio cache-deploy / direct-copy: {c / d:.2f}x")
        print(f"  ratio (warm + deploy) / direct-copy: {(w + c) / d:.2f}x")
    finally:
        close_masters()
        control.down(labdir)
        shutil.rmtree(labdir, ignore_errors=True)
        shutil.rmtree(fleet_dir.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
