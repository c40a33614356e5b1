"""`nixify lab up|status|reboot|down` and `nixify demo`; and the lab's own set-up steps under
other commands (``extend``): `nixify secrets lab-provision`, `nixify cache lab-setup`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nixify import paths
from nixify.errors import NixifyError
from nixify.inventory import load_fleet
from nixify.inventory.hostkeys import (
    canonical_key,
    fingerprint,
    host_pattern,
    pinned_keys,
    scan_host_key,
)
from nixify.lab import control
from nixify.lab.cache import setup_lab_cache
from nixify.lab.secrets import LAB_OPERATOR_IDENTITY
from nixify.lab.state import LabState, default_dir, default_net, default_port


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _add_where(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="lab directory (default: $NIXIFY_LAB_DIR or /var/tmp/nixify-lab)",
    )


def _up(args: argparse.Namespace) -> int:
    root = paths.repo_root()
    state = control.up(
        load_fleet(paths.hosts_file(root)),
        args.hosts,
        args.dir or default_dir(),
        args.net or default_net(),
        args.port or default_port(),
        paths.fleet_dir(root),
        log=_log,
    )
    print(f"lab up: {len(state.hosts)} hosts; ssh -F {state.ssh_config} <host>")
    return 0


def host_key_changes(state: LabState, alive: dict[str, bool]) -> dict[str, str]:
    """host -> the fingerprint of the key it presents (when up; else its key file)
    where that differs from the key the lab recorded for it (its known_hosts): a
    host whose key was regenerated, until `nixify secrets rotate-host` records it."""
    try:
        known = Path(state.known_hosts).read_text()
    except OSError:
        return {}

    def current(h: Any) -> str | None:
        if alive.get(h.name):
            scanned = scan_host_key(h.address, h.port, timeout=5).key
            if scanned is not None:
                return scanned
        # down, or too slow to answer a key scan: the key file the host serves
        try:
            return canonical_key(Path(h.host_key_pub).read_text(), h.host_key_pub)
        except (OSError, NixifyError):
            return None

    with ThreadPoolExecutor(max_workers=16) as pool:
        keys = dict(zip([h.name for h in state.hosts], pool.map(current, state.hosts),
                        strict=True))
    changed = {}
    for h in state.hosts:
        pinned = pinned_keys(known, [h.name, host_pattern(h.address, h.port)])
        key = keys[h.name]
        if key is not None and pinned and key not in pinned:
            changed[h.name] = fingerprint(key)
    return changed


def status_document(
    state: LabState, alive: dict[str, bool], key_changed: dict[str, str] | None = None
) -> dict[str, Any]:
    key_changed = key_changed or {}
    return {
        "dir": state.dir,
        "operator_key": state.operator_key,
        "ssh_config": state.ssh_config,
        "known_hosts": state.known_hosts,
        "hosts": [
            {
                "name": h.name,
                "role": h.role,
                "address": h.address,
                "port": h.port,
                "identity_file": state.operator_key,
                "host_key_pub": h.host_key_pub,
                "root": h.root,
                "pid": h.pid,
                "up": alive.get(h.name, False),
                "host_key_changed": h.name in key_changed,
                **({"host_key_now": key_changed[h.name]} if h.name in key_changed else {}),
            }
            for h in state.hosts
        ],
    }


def _status(args: argparse.Namespace) -> int:
    directory = args.dir or default_dir()
    state, alive = control.status(directory)
    if state is None:
        if args.json:
            print(json.dumps({"dir": str(directory), "hosts": []}))
        else:
            print(f"no lab in {directory} (run `nixify lab up`)")
        return 1
    changed = host_key_changes(state, alive)
    if args.json:
        print(json.dumps(status_document(state, alive, changed), indent=2))
    else:
        width = max(len(h.name) for h in state.hosts)
        for h in state.hosts:
            mark = "up" if alive[h.name] else "DOWN"
            note = (
                f"  HOST KEY CHANGED: presents {changed[h.name]}, not the recorded key "
                f"(nixify secrets rotate-host {h.name})"
                if h.name in changed
                else ""
            )
            print(f"{h.name:<{width}}  {h.role:<15} {h.address}:{h.port}  {mark:<4}{note}".rstrip())
        print(f"{sum(alive.values())}/{len(state.hosts)} up; operator key {state.operator_key}"
              + (f"; {len(changed)} host key(s) changed" if changed else ""))
    return 0 if all(alive.values()) else 1


def _reboot(args: argparse.Namespace) -> int:
    system, rc, output = control.reboot_host(args.dir or default_dir(), args.host)
    print(f"{args.host}: booted {system}; activation exit {rc}")
    if rc != 0:
        _log(f"{args.host}: activation at boot failed (exit {rc}):\n{output.strip()}")
        return 1
    return 0


def _down(args: argparse.Namespace) -> int:
    control.down(args.dir or default_dir(), log=_log)
    return 0


def _demo(args: argparse.Namespace) -> int:
    """Bring the lab up and run the main job on it: the deploy of every host."""
    root = paths.repo_root()
    directory = args.dir or default_dir()
    control.up(
        load_fleet(paths.hosts_file(root)),
        args.hosts,
        directory,
        default_net(),
        default_port(),
        paths.fleet_dir(root),
        log=_log,
    )
    pyinfra = Path(sys.executable).with_name("pyinfra")
    cmd = [str(pyinfra), "-y", "inventories/lab.py", "deploy.py"]
    _log(f"demo: {' '.join(cmd)}")
    proc = subprocess.run(cmd, cwd=root)
    if proc.returncode != 0:
        raise NixifyError(f"demo: the deploy exited {proc.returncode}")
    return 0


def register(sub: Any) -> None:
    lab = sub.add_parser("lab", help="a real multi-host lab on this machine (root)")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    p = lab_sub.add_parser("up", help="start N hosts (idempotent)")
    p.add_argument("--hosts", type=int, default=15)
    p.add_argument("--net", default=None, help="first three octets, e.g. 127.0.0")
    p.add_argument("--port", type=int, default=None)
    _add_where(p)
    p.set_defaults(func=_up)
    p = lab_sub.add_parser("status", help="which hosts run and answer")
    p.add_argument("--json", action="store_true")
    _add_where(p)
    p.set_defaults(func=_status)
    p = lab_sub.add_parser(
        "reboot",
        help="power loss and boot: kill the host, clear /run, activate its boot entry, sshd",
    )
    p.add_argument("host", help="the lab host to reboot")
    _add_where(p)
    p.set_defaults(func=_reboot)
    p = lab_sub.add_parser("down", help="stop every lab process and remove the hosts")
    _add_where(p)
    p.set_defaults(func=_down)
    p = sub.add_parser("demo", help="lab up, then the main job (deploy) on the lab")
    p.add_argument("--hosts", type=int, default=15)
    _add_where(p)
    p.set_defaults(func=_demo)


def _lab_provision(args: argparse.Namespace) -> int:
    lab_dir = Path(args.dir) if args.dir else default_dir()
    result = control.provision_lab(lab_dir)
    print(
        f"{lab_dir / 'secrets'}: {len(result.created)} created, "
        f"{result.rekey.count('rekeyed')} rekeyed, {result.rekey.count('unchanged')} unchanged; "
        f"operator identity {lab_dir / LAB_OPERATOR_IDENTITY}"
    )
    return 0


def _lab_setup(args: argparse.Namespace) -> int:
    lab_dir = Path(args.lab_dir) if args.lab_dir else default_dir()
    config = setup_lab_cache(lab_dir, args.host, args.port)
    print(f"lab cache {config.url} on {config.server_host}; trusted key {config.public_keys[0]}")
    return 0


def extend(commands: dict[str, Any]) -> None:
    """The lab's set-up steps under other subsystems' commands (each present only
    when that subsystem registered its command): ``secrets lab-provision`` and
    ``cache lab-setup``. The lab imports the subsystems; they never import the lab."""
    secrets = commands.get("secrets")
    if secrets is not None:
        lp = secrets.add_parser(
            "lab-provision", help="generate the lab's secrets tree from its host keys (idempotent)"
        )
        lp.add_argument("--dir", help="the lab directory (default $NIXIFY_LAB_DIR)")
        lp.set_defaults(func=_lab_provision)
    cache = commands.get("cache")
    if cache is not None:
        s = cache.add_parser("lab-setup", help="serve a cache from a lab host, enrol every host")
        s.add_argument("--lab-dir", help="the lab's directory (default $NIXIFY_LAB_DIR)")
        s.add_argument("--host", help="the lab host that serves it (default: a NAS)")
        s.add_argument("--port", type=int, default=5080)
        s.set_defaults(func=_lab_setup)
