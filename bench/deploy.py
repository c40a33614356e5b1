"""Benchmark: the full nixify pipeline against a plain parallel shell script.

Both deploy the same one-package change to every host of a lab: the baseline
(named `plain-shell`) runs the same essential commands with no orchestration
(ship sources and build on the builders, builder -> host copy, dry-activate,
test, switch, GC root), in parallel with `&` and `wait`; nixify adds locks,
the closure diff/RCA, reports and pins. Each trial bumps the package to a new
version, so both sides build for real. Prints both walls and the ratio, then
the wall per host at larger lab sizes.

    .venv/bin/python bench/deploy.py [--hosts 15] [--scale 50,100] [--trials 2]

Needs root (the lab). Uses its own lab on 127.0.4.x, taken down at the end.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nixify.inventory import load_fleet  # noqa: E402
from nixify.lab import LabState, control, fleet_for_state  # noqa: E402

PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
NET = "127.0.4"


def sh(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc  # type: ignore[no-any-return]


def project(tmp: Path) -> Path:
    dest = tmp / "project"
    dest.mkdir()
    for name in ("deploy.py", "rollback.py"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("inventories", "fleet"):
        shutil.copytree(REPO / name, dest / name)
    sh(["git", "-C", str(dest), "init", "-q"])
    return dest


def bump(proj: Path, version: str) -> None:
    pkgs = proj / "fleet" / "packages.nix"
    text = pkgs.read_text()
    start = text.index('pname = "node-exporter"; version = "') + len('pname = "node-exporter"; version = "')
    end = text.index('"', start)
    pkgs.write_text(text[:start] + version + text[end:])


def nixify_deploy(state: LabState, proj: Path) -> float:
    env = dict(os.environ, NIXIFY_LAB_DIR=state.dir)
    started = time.monotonic()
    sh([PYINFRA, "-y", "inventories/lab.py", "deploy.py"], cwd=proj, env=env)
    return time.monotonic() - started


def baseline_script(state: LabState, proj: Path) -> str:
    """The same essential commands as a plain shell script, all hosts in parallel."""
    fleet = fleet_for_state(load_fleet(proj / "inventories" / "hosts.yaml"), state)
    cfg = shlex.quote(state.ssh_config)
    lines = ["set -e", f"src=/var/lib/nixify/bench-src-$$"]
    batches: dict[str, list[str]] = {}
    for h in state.hosts:
        builder = next(b for b in fleet[h.name].builders)
        batches.setdefault(builder, []).append(h.name)
    args = ""
    for k, v in sorted(next(iter(fleet)).nix_args.items()):
        args += f" --argstr {shlex.quote(k)} {shlex.quote(v)}"
    for builder, names in batches.items():
        attrs = " ".join(f"-A hosts.{n}" for n in names)
        lines.append(
            f"( tar -C {shlex.quote(str(proj / 'fleet'))} -c . | ssh -F {cfg} {builder} "
            f"\"mkdir -p $src && tar -x -C $src\" && "
            f"ssh -F {cfg} {builder} \"nix-build $src{args} {attrs} -o /tmp/bench-{builder}\""
            f" > /tmp/bench-out-{builder}-$$ ) &"
        )
    lines.append("wait")
    for builder, names in batches.items():
        lines.append(f"set -- $(cat /tmp/bench-out-{builder}-$$)")
        for n in names:
            h = state.host(n)
            lines.append(
                f"( p=$1; ssh -F {cfg} {builder} \"NIX_SSHOPTS='-p {h.port}' nix copy --to "
                f"ssh://root@{h.address} $p\" && ssh -F {cfg} {n} \"$p/bin/switch-to-configuration "
                f"dry-activate >/dev/null && $p/bin/switch-to-configuration test && "
                f"nix-env -p /nix/var/nix/profiles/system --set $p && "
                f"$p/bin/switch-to-configuration switch && mkdir -p /nix/var/nix/gcroots/bench && "
                f"ln -sfn $p /nix/var/nix/gcroots/bench/current\" ) & shift"
            )
    lines.append("wait")
    lines.append(f"rm -f /tmp/bench-out-*-$$")
    return "\n".join(lines) + "\n"


def baseline_deploy(state: LabState, proj: Path) -> float:
    script = baseline_script(state, proj)
    started = time.monotonic()
    sh(["bash", "-c", script])
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=15)
    parser.add_argument("--scale", default="50,100", help="larger lab sizes ('' for none)")
    parser.add_argument("--trials", type=int, default=2)
    opts = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/deploy.py needs root (the lab)")
    fleet = load_fleet(REPO / "inventories" / "hosts.yaml")
    labdir = Path(tempfile.mkdtemp(prefix="nixify-bench-lab-"))
    with tempfile.TemporaryDirectory(prefix="nixify-bench-") as tmp:
        proj = project(Path(tmp))
        try:
            state = control.up(fleet, opts.hosts, labdir, NET, 2222, REPO / "fleet")
            nixify_deploy(state, proj)  # warm: every host deployed once, pins exist
            ours, theirs = [], []
            for trial in range(opts.trials):
                bump(proj, f"1.9.{trial * 2 + 1}")
                theirs.append(baseline_deploy(state, proj))
                bump(proj, f"1.9.{trial * 2 + 2}")
                ours.append(nixify_deploy(state, proj))
            best_ours, best_theirs = min(ours), min(theirs)
            print(f"hosts: {opts.hosts}, one-package change (node-exporter), "
                  f"best of {opts.trials} trials")
            print(f"  baseline plain-shell  wall {best_theirs:7.2f}s  {[round(t, 2) for t in theirs]}")
            print(f"  nixify deploy.py      wall {best_ours:7.2f}s  {[round(t, 2) for t in ours]}")
            print(f"  ratio nixify / plain-shell: {best_ours / best_theirs:.2f}x (target <= 1.3x)")
            control.down(labdir)
            for size in [int(s) for s in opts.scale.split(",") if s]:
                state = control.up(fleet, size, labdir, NET, 2222, REPO / "fleet")
                nixify_deploy(state, proj)
                bump(proj, f"2.{size}.0")
                wall = nixify_deploy(state, proj)
                print(f"hosts: {size:4d}  nixify wall {wall:7.2f}s  per host {wall / size:.3f}s")
                control.down(labdir)
        finally:
            control.down(labdir)
            shutil.rmtree(labdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
