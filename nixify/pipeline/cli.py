"""`nixify status`, `rollback` and `plan`: the fleet against its ledger, and ahead.

    nixify status [--limit ROLE|HOST]... [--json] [--inventory FILE]
    nixify rollback [--to TAG | --previous] [--limit ROLE|HOST]... [--inventory FILE]
    nixify plan [--limit ROLE|HOST]... [--expect PKG,...] [--json] [--out FILE]

Both run pyinfra on the inventory (default ``$NIXIFY_INVENTORY`` or
``inventories/fleet.py``) from the project directory: ``status.py`` gathers facts
on every selected host in parallel, ``rollback.py`` redeploys a known-good closure
from the host's own pin (no evaluation, no build) through gates 3-5.

``plan`` runs ``deploy.py --data mode=plan``: gates 1-3 on every selected host, no
deploy lock, nothing activated; it prints the fleet's changes grouped by cause, per
role, the hosts that would not deploy and the drift against ``--expect``, and exits
0 when the plan matches the declaration (every host would deploy, nothing outside
``--expect``), 1 when it does not, 2 on error. ``--out FILE`` saves the plan for a
later ``deploy.py --data plan=FILE``.

``status`` exits 1 when a selected host did not answer, has no known-good pin, or
runs something other than its newest known-good closure; 0 otherwise. ``rollback
--to TAG`` limits itself to the tag's target unless ``--limit`` says otherwise, and
exits as the rollback run does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from nixify import paths
from nixify.errors import ConfigError, NixifyError
from nixify.git import git_ok
from nixify.release.git import list_tags
from nixify.release.ledger import build_ledger
from nixify.release.names import parse_release_tag
from nixify.release.status import (
    HostProbe,
    fleet_document,
    fleet_status,
    read_probes,
    render,
)

DEFAULT_INVENTORY = "inventories/fleet.py"


def _pyinfra() -> str:
    return str(Path(sys.executable).with_name("pyinfra"))


def _inventory(args: argparse.Namespace, root: Path) -> str:
    inv = args.inventory or os.environ.get("NIXIFY_INVENTORY") or DEFAULT_INVENTORY
    if not (root / inv).is_file() and not Path(inv).is_file():
        raise ConfigError(f"--inventory {inv}: no such file in {root}")
    return str(inv)


def _deploy_file(root: Path, name: str) -> str:
    """The project's own deploy file, else the one shipped with the package."""
    return paths.deploy_file(root, name)


def _limits(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for value in args.limit or []:
        out += ["--limit", value]
    return out


def _is_git(root: Path) -> bool:
    return git_ok(root, "rev-parse", "--git-dir")


# -- status ------------------------------------------------------------------------------


def gather(root: Path, inventory: str, limits: list[str]) -> list[Any]:
    """Run the status deploy; the probes of every selected host."""
    with tempfile.TemporaryDirectory(prefix="nixify-status-") as tmp:
        out = Path(tmp) / "probe.json"
        cmd = [_pyinfra(), "-y", inventory, _deploy_file(root, "status.py"), *limits,
               "--data", f"status_out={out}"]
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        if out.is_file():
            return read_probes(out)
        text = proc.stdout + proc.stderr
        load_error = _inventory_error(text)
        if load_error:
            raise ConfigError(f"status: cannot load the inventory {inventory}: {load_error}")
        if "No hosts remaining" in text:  # not one selected host answered
            return _all_unreachable(root, inventory, limits)
        tail = "\n".join((proc.stderr.strip() or proc.stdout.strip()).splitlines()[-15:])
        raise NixifyError(f"status: pyinfra exited {proc.returncode} with no probe:\n{tail}")


def _inventory_error(text: str) -> str | None:
    """The one line pyinfra prints when the inventory file cannot load (None: it loaded)."""
    lines = text.splitlines()
    if "--> Loading inventory..." not in lines:
        return None
    after = lines[lines.index("--> Loading inventory...") + 1:]
    for line in after:
        if line.startswith("--> Connecting"):
            return None
        if line.startswith("--> pyinfra error") or line.startswith("--> An unexpected"):
            message = line.removeprefix("--> ")
            # "pyinfra error in FILE line N: FILE: why" -> "why (FILE line N)"
            head, sep, why = message.partition(": ")
            return f"{why} ({head.removeprefix('pyinfra error in ')})" if sep else message
    return None


def _all_unreachable(root: Path, inventory: str, limits: list[str]) -> list[Any]:
    """When no selected host answered, pyinfra stops before the status deploy runs:
    list the selected hosts from the inventory itself, each as not answering."""
    proc = subprocess.run([_pyinfra(), inventory, "debug-inventory", "--json", *limits],
                          cwd=root, capture_output=True, text=True)
    try:
        hosts = json.loads(proc.stdout)
    except ValueError:
        raise NixifyError(f"status: no host answered, and the inventory {inventory} could not "
                          f"be listed: {proc.stderr.strip()[-500:]}") from None
    patterns = [v for i, v in enumerate(limits) if i % 2 == 1]
    out = []
    for h in hosts:
        name, groups = str(h["name"]), set(h.get("groups") or [])
        if patterns and not any(p in groups or fnmatch(name, p) for p in patterns):
            continue
        data = h.get("data") or {}
        role = str(data.get("role") or "") if isinstance(data, dict) else ""
        out.append(HostProbe(host=name, role=role, reachable=False,
                             error="did not answer over SSH"))
    return out


def _status(args: argparse.Namespace) -> int:
    root = paths.repo_root()
    probes = gather(root, _inventory(args, root), _limits(args))
    tags = list_tags(root) if _is_git(root) else []
    ledger = build_ledger({p.host: p.records for p in probes if p.reachable}, tags)
    statuses = fleet_status(probes, ledger)
    try:
        if args.json:
            sys.stdout.write(fleet_document(statuses, ledger).to_text())
        else:
            print(render(statuses))
        sys.stdout.flush()
    except BrokenPipeError:
        return _closed_pipe()
    bad = [s for s in statuses if not s.answered or not s.runs_known_good]
    return 1 if bad else 0


def _closed_pipe() -> int:
    """The reader went away (``nixify status | head -1``): no traceback, and nothing
    more is written (Python would flush stdout again at exit); 141 as SIGPIPE gives."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


# -- rollback ------------------------------------------------------------------------------


def _rollback(args: argparse.Namespace) -> int:
    root = paths.repo_root()
    inventory = _inventory(args, root)
    limits = _limits(args)
    data: list[str] = []
    if args.to:
        parts = parse_release_tag(args.to)
        if parts is None:
            raise ConfigError(
                f"--to {args.to}: not a release tag (release/<target>/<UTC>-<shortrev>)"
            )
        known = [t.name for t in list_tags(root, parts.target)] if _is_git(root) else []
        if parts.name not in known:
            raise ConfigError(
                f"--to {args.to}: no such release tag in {root} (tags of {parts.target}: "
                f"{', '.join(known) or 'none'})"
            )
        if not limits:
            limits = ["--limit", parts.target]
        data = ["--data", f"to={parts.name}"]
    cmd = [_pyinfra(), "-y", inventory, _deploy_file(root, "rollback.py"), *limits, *data]
    print(f"nixify rollback: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    return subprocess.run(cmd, cwd=root).returncode


# -- plan ---------------------------------------------------------------------------------


def run_plan(root: Path, inventory: str, limits: list[str], expect: str | None) -> Any:
    """Run ``deploy.py --data mode=plan`` (report in a private directory); its report."""
    from nixify.pipeline.report import RunReport

    with tempfile.TemporaryDirectory(prefix="nixify-plan-") as tmp:
        data = ["--data", "mode=plan", "--data", f"reports_dir={tmp}", "--data", "release=off"]
        if expect:
            data += ["--data", f"expect={expect}"]
        cmd = [_pyinfra(), "-y", inventory, _deploy_file(root, "deploy.py"), *limits, *data]
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        latest = Path(tmp) / "latest.json"
        if latest.is_file():
            try:
                return RunReport.from_json(json.loads(latest.read_text()))
            except ValueError as exc:
                raise NixifyError(f"plan: the run's report is unreadable: {exc}") from None
        text = proc.stdout + proc.stderr
        load_error = _inventory_error(text)
        if load_error:
            raise ConfigError(f"plan: cannot load the inventory {inventory}: {load_error}")
        tail = "\n".join((proc.stderr.strip() or proc.stdout.strip()).splitlines()[-15:])
        raise NixifyError(f"plan: pyinfra exited {proc.returncode} with no report:\n{tail}")


def _plan(args: argparse.Namespace) -> int:
    from nixify.pipeline.plan import build_plan, render_plan

    root = paths.repo_root()
    expect = ",".join(args.expect or []) or None
    report = run_plan(root, _inventory(args, root), _limits(args), expect)
    plan = build_plan(report, (e.strip() for e in (expect or "").split(",") if e.strip()))
    if args.out:
        plan.write(Path(args.out))
    try:
        sys.stdout.write(plan.to_text() if args.json else render_plan(plan))
        sys.stdout.flush()
    except BrokenPipeError:
        return _closed_pipe()
    if args.out:
        print(f"plan saved: {args.out} (deploy it with --data plan={args.out})",
              file=sys.stderr)
    return 0 if plan.ok else 1


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", action="append", metavar="ROLE|HOST",
                   help="only these roles or hosts (repeatable)")
    p.add_argument("--inventory", default=None, metavar="FILE",
                   help=f"pyinfra inventory (default: $NIXIFY_INVENTORY or {DEFAULT_INVENTORY})")
    p.add_argument("-i", dest="inventory", help=argparse.SUPPRESS)  # the old spelling


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="per host: running and booted closures, newest known-good pin, tag, drift",
    )
    _common(p)
    p.add_argument("--json", action="store_true", help="machine output")
    p.set_defaults(func=_status)
    p = sub.add_parser(
        "rollback",
        help="redeploy a known-good closure from the hosts' pins (no build)",
    )
    _common(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--to", metavar="TAG",
                       help="the release tag to return to (limit defaults to its target)")
    which.add_argument("--previous", action="store_true",
                       help="each host's previous known-good closure (the default)")
    p.set_defaults(func=_rollback)
    p = sub.add_parser(
        "plan",
        help="gates 1-3 on every selected host, nothing activated: changes grouped by cause",
    )
    _common(p)
    p.add_argument("--expect", action="append", metavar="PKG,...",
                   help="packages or causes the plan may change (as --data expect=); "
                        "exit 1 when anything else changes")
    p.add_argument("--json", action="store_true", help="machine output (the saved plan)")
    p.add_argument("--out", metavar="FILE",
                   help="save the plan (JSON) for a later deploy --data plan=FILE")
    p.set_defaults(func=_plan)
