"""Benchmark: `nixify plan` against gates 1-3 of a deploy (`deploy.py --data mode=dry`)
on the same lab, with the same kind of change, ratio printed (target: <= 1.2).

Each trial bumps openssl (every role's systems depend on it) to a new version before
each tool, so both build for real on the lab's builders; the order of the two
alternates between trials. After the last plan it checks that nothing was activated
on any host (running system, system profile, known-good pins, no deploy lock left)
and that the grouped output names every cause with its root cause and host count,
and prints that plan.

    .venv/bin/python bench/plan.py [--hosts 15] [--trials 3] [--lab-dir DIR] [--net 127.0.5]

Needs root (the lab). Uses its own lab (default: a temp dir), taken down at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nixify.inventory import load_fleet  # noqa: E402
from nixify.lab import LabState, control  # noqa: E402

BIN = Path(sys.executable).parent
TARGET = 1.2


def run(cmd: list[str], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,)
        ) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode not in ok:
        raise SystemExit(f"{cmd[:4]} exited {proc.returncode}:\n{proc.stdout[-3000:]}"
                         f"{proc.stderr[-3000:]}")
    return wall, proc


def project(tmp: Path) -> Path:
    dest = tmp / "project"
    dest.mkdir()
    for name in ("deploy.py", "rollback.py"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("inventories", "fleet"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / ".gitignore").write_text("reports/\n__pycache__/\n")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "chore: fleet")
    return dest


def git(repo: Path, *args: str) -> None:
    env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.invalid",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.invalid")
    subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)


def bump(proj: Path, version: str) -> None:
    pkgs = proj / "fleet" / "packages.nix"
    text = pkgs.read_text()
    marker = 'pname = "openssl"; version = "'
    start = text.index(marker) + len(marker)
    end = text.index('"', start)
    pkgs.write_text(text[:start] + version + text[end:])
    git(proj, "commit", "-qam", f"feat: openssl {version}")


def host_state(state: LabState, name: str) -> str:
    proc = subprocess.run(
        ["ssh", *state.ssh_args(name),
         "readlink -f /run/current-system /nix/var/nix/profiles/system; "
         "ls /var/lib/nixify/known-good 2>/dev/null; "
         "test -d /var/lib/nixify/deploy.lock && echo LOCKED; true"],
        capture_output=True, text=True, check=True,
    )
    return proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=15)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--lab-dir", default="")
    parser.add_argument("--net", default="127.0.5")
    parser.add_argument("--port", type=int, default=2222)
    opts = parser.parse_args()
    if not opts.net.startswith("127."):
        raise SystemExit("--net: lab hosts live on 127.0.0.0/8 only")
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}  {platform.node()}  nproc {os.cpu_count()}  "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="nixify-bench-plan-") as tmp:
        labdir = Path(opts.lab_dir) if opts.lab_dir else Path(tmp) / "lab"
        fleet = load_fleet(REPO / "inventories" / "hosts.yaml")
        proj = project(Path(tmp))
        try:
            state = control.up(fleet, opts.hosts, labdir, opts.net, opts.port, REPO / "fleet")
            env = dict(os.environ, NIXIFY_LAB_DIR=state.dir, NIXIFY_REPO=str(proj))
            dry_cmd = [str(BIN / "pyinfra"), "-y", "inventories/lab.py", "deploy.py",
                       "--data", "mode=dry"]
            plan_cmd = [str(BIN / "nixify"), "plan", "--inventory", "inventories/lab.py"]
            run(dry_cmd, proj, env)  # warm: the builders' stores, ssh, page cache
            before = {h.name: host_state(state, h.name) for h in state.hosts}
            dry_t: list[float] = []
            plan_t: list[float] = []
            out = ""
            saved = Path(tmp) / "plan.json"
            for trial in range(opts.trials):
                order = ("dry", "plan") if trial % 2 == 0 else ("plan", "dry")
                for i, tool in enumerate(order):
                    bump(proj, f"3.1.{trial * 2 + i}")
                    if tool == "dry":
                        dry_t.append(run(dry_cmd, proj, env)[0])
                    else:
                        wall, proc = run([*plan_cmd, "--out", str(saved)], proj, env, (0, 1))
                        plan_t.append(wall)
                        out = proc.stdout
            after = {h.name: host_state(state, h.name) for h in state.hosts}
            changed = sorted(n for n in before if before[n] != after[n])
            doc = json.loads(saved.read_text())
            missing = [c["title"] for c in doc["causes"]
                       if f"{c['title']} (root cause: {c['root_cause']}): "
                          f"{len(c['hosts'])} host" not in out]
        finally:
            control.down(labdir)
    dry, plan = statistics.median(dry_t), statistics.median(plan_t)
    ratio = plan / dry
    print(f"\n{opts.hosts} hosts, {opts.trials} trials, one openssl bump before each run "
          "(every role rebuilds)")
    print(f"  deploy.py --data mode=dry (gates 1-3): median {dry:.2f}s  "
          f"({', '.join(f'{t:.2f}' for t in dry_t)})")
    print(f"  nixify plan                          : median {plan:.2f}s  "
          f"({', '.join(f'{t:.2f}' for t in plan_t)})")
    print(f"  ratio plan / dry = {ratio:.2f} (target <= {TARGET})")
    print(f"  hosts changed by the plans: {', '.join(changed) or 'none'} "
          "(running system, profile, pins, lock)")
    print(f"  causes not named with root cause and host count: {', '.join(missing) or 'none'}")
    print("\nthe last plan:\n" + out)
    return 0 if ratio <= TARGET and not changed and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
