"""Benchmark: the full nixify pipeline against a plain parallel shell script and an
Ansible playbook, side by side in one run.

All three deploy the same one-package change to every host of a lab:

* `plain-shell`: the same essential commands with no orchestration (ship sources
  and build on the builders, builder -> host copy, dry-activate, test, switch, GC
  root), hosts in parallel with `&` and `wait`;
* `ansible-playbook`: a playbook generated here that runs the same pipeline with
  the same commands, one task per step (ansible-core from PyPI in a bench-only
  virtualenv, created on first use; forks = hosts, pipelining on, no facts);
* `nixify`: `pyinfra inventories/lab.py deploy.py`, which adds locks, the
  closure diff/RCA, reports and pins.

Each trial bumps the package to a new version before each tool, so every tool
builds for real. Prints a table (wall, best of the trials, and nixify's ratio to
each baseline), then the wall per host at larger lab sizes with the operator's
peak RSS (the pyinfra process's maximum resident set, from wait4).

    .venv/bin/python bench/deploy.py [--hosts 15] [--scale 50,100] [--trials 2]
        [--lab-dir DIR] [--net 127.0.4] [--no-ansible]

Needs root (the lab). Uses its own lab (default: a temp dir on 127.0.4.x), taken
down at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.benchkit import loadavg, machine, table  # noqa: E402
from nixify.errors import NixifyError  # noqa: E402
from nixify.inventory import load_fleet  # noqa: E402
from nixify.lab import LabState, control, fleet_for_state  # noqa: E402

PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
NET = "127.0.4"
ANSIBLE_VENV = REPO / "bench" / ".venv-ansible"


def sh(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc  # type: ignore[no-any-return]


class RunFailed(Exception):
    """A timed command exited non-zero; the message carries what it said last."""


def timed(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
          ) -> tuple[float, int, float]:
    """Run ``cmd``; its wall, its peak RSS in KiB and the CPU (user + system) of it and
    the children it waited for (ssh, nix, ...), all from wait4 of that one child."""
    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            out.seek(0)
            text = out.read().decode(errors="replace")
            # pyinfra's summary names the failed hosts and why: keep those lines first
            key = [ln for ln in text.splitlines()
                   if "hosts passed" in ln or " failed: " in ln or "skipped: " in ln]
            raise RunFailed(f"{cmd[:4]} failed ({proc.returncode}): "
                            + "\n".join(key[:12]) + "\n..." + text[-3000:])
    return wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


PROJECT_FILES = ("deploy.py", "rollback.py", "inventories", "fleet")
# with --rev, the code too: the run is of that commit, not of a shared, dirty tree
CODE = ("nixify", "operations")


def project(tmp: Path, rev: str = "") -> Path:
    """The deploy project, from the working tree, or (``rev``) from a commit with its code."""
    dest = tmp / "project"
    dest.mkdir()
    if rev:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", rev, *PROJECT_FILES, *CODE],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    else:
        for name in PROJECT_FILES[:2]:
            shutil.copy2(REPO / name, dest / name)
        for name in PROJECT_FILES[2:]:
            shutil.copytree(REPO / name, dest / name)
    sh(["git", "-C", str(dest), "init", "-q"])
    return dest


def bump(proj: Path, version: str) -> None:
    pkgs = proj / "fleet" / "packages.nix"
    text = pkgs.read_text()
    marker = 'pname = "node-exporter"; version = "'
    start = text.index(marker) + len(marker)
    end = text.index('"', start)
    pkgs.write_text(text[:start] + version + text[end:])


def nixify_deploy(state: LabState, proj: Path) -> tuple[float, int, float]:
    """Wall, the operator's (pyinfra's) peak RSS in KiB, and its CPU."""
    env = dict(os.environ, NIXIFY_LAB_DIR=state.dir, NIXIFY_LAB_NET=state.net)
    if (proj / "nixify").is_dir():  # --rev: that commit's code, ahead of the editable install
        env["PYTHONPATH"] = str(proj)
    return timed([PYINFRA, "-y", "inventories/lab.py", "deploy.py"], cwd=proj, env=env)


def _batches(state: LabState, proj: Path) -> tuple[dict[str, list[str]], str]:
    """Builder -> the hosts it builds (in order), and nix-build's --argstr arguments."""
    fleet = fleet_for_state(load_fleet(proj / "inventories" / "hosts.yaml"), state)
    batches: dict[str, list[str]] = {}
    for h in state.hosts:
        builder = next(b for b in fleet[h.name].builders)
        batches.setdefault(builder, []).append(h.name)
    args = ""
    for k, v in sorted(next(iter(fleet)).nix_args.items()):
        args += f" --argstr {shlex.quote(k)} {shlex.quote(v)}"
    return batches, args


def baseline_script(state: LabState, proj: Path) -> str:
    """The same essential commands as a plain shell script, all hosts in parallel."""
    batches, args = _batches(state, proj)
    cfg = shlex.quote(state.ssh_config)
    # a bare `wait` returns 0 whatever its jobs did: wait for each pid, fail on any
    join = 'for p in $pids; do wait "$p" || exit 1; done; pids=""'
    lines = ["set -e", "src=/var/lib/nixify/bench-src-$$", 'pids=""']
    for builder, names in batches.items():
        attrs = " ".join(f"-A hosts.{n}" for n in names)
        lines.append(
            f"( tar -C {shlex.quote(str(proj / 'fleet'))} -ch . | ssh -F {cfg} {builder} "
            f"\"mkdir -p $src && tar -x -C $src\" && "
            f"ssh -F {cfg} {builder} \"nix-build $src{args} {attrs} -o /tmp/bench-{builder}\""
            f" > /tmp/bench-out-{builder}-$$ ) & pids=\"$pids $!\""
        )
    lines.append(join)
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
                f"ln -sfn $p /nix/var/nix/gcroots/bench/current\" ) & pids=\"$pids $!\"; shift"
            )
    lines.append(join)
    lines.append("rm -f /tmp/bench-out-*-$$")
    return "\n".join(lines) + "\n"


def verify(state: LabState, version: str, tool: str) -> None:
    """Every host runs a system with node-exporter ``version`` (checked after the clock)."""
    want = f"node-exporter-{version}"

    def check(name: str) -> str:
        cmd = f"nix-store -qR /run/current-system | grep -q -- '-{want}$' && echo ok"
        proc = subprocess.run(["ssh", *state.ssh_args(name), cmd], capture_output=True,
                              text=True)
        return "" if proc.stdout.strip() == "ok" else name

    with ThreadPoolExecutor(max_workers=8) as pool:
        wrong = [n for n in pool.map(check, [h.name for h in state.hosts]) if n]
    if wrong:
        raise SystemExit(f"{tool}: {len(wrong)} host(s) do not run {want}: {', '.join(wrong)}")


def gate_times(proj: Path) -> list[list[str]]:
    """Per gate of the last nixify run (reports/latest.json): median and slowest host,
    and the wall from the first host's start of it to the last host's end."""
    doc = json.loads((proj / "reports" / "latest.json").read_text())
    spans: dict[str, list[tuple[float, float]]] = {}
    for host in doc["hosts"].values():
        for gate, res in host["gates"].items():
            start = res.get("started")
            t0 = datetime.fromisoformat(start).timestamp() if start else 0.0
            spans.setdefault(gate, []).append((t0, float(res.get("seconds", 0.0))))
    rows = []
    for gate, times in spans.items():
        secs = sorted(t for _, t in times)
        starts = [t0 for t0, _ in times if t0]
        wall = max(t0 + t for t0, t in times) - min(starts) if starts else 0.0
        rows.append([gate, str(len(secs)), f"{statistics.median(secs):.2f}",
                     f"{secs[-1]:.2f}", f"{wall:.2f}"])
    return rows


def baseline_deploy(state: LabState, proj: Path) -> tuple[float, float]:
    script = baseline_script(state, proj)
    wall, _, cpu = timed(["bash", "-c", script])
    return wall, cpu


# ---------------------------------------------------------------- the Ansible baseline


def ansible_venv(venv: Path) -> Path:
    """``ansible-playbook`` from a bench-only virtualenv (made and filled on first use)."""
    playbook = venv / "bin" / "ansible-playbook"
    if not playbook.exists():
        print(f"creating {venv} (ansible-core from PyPI) ...", flush=True)
        sh([sys.executable, "-m", "venv", str(venv)])
        sh([str(venv / "bin" / "pip"), "install", "-q", "ansible-core"])
    return playbook


def ansible_project(state: LabState, proj: Path, work: Path) -> Path:
    """Inventory, ansible.cfg and playbook for the lab; returns the playbook's directory.

    The playbook runs the plain-shell baseline's commands, one task per step:
    builders get the fleet sources and build every host of theirs in one
    nix-build; then on every host in parallel: copy from its builder, dry-activate,
    test, set the profile, switch, GC root.
    """
    batches, args = _batches(state, proj)
    work.mkdir(parents=True, exist_ok=True)
    common = (
        f"-o UserKnownHostsFile={state.known_hosts} -o StrictHostKeyChecking=yes "
        "-o IdentitiesOnly=yes -o BatchMode=yes -o LogLevel=ERROR"
    )
    inv = ["[builders]"]
    for b in batches:
        h = state.host(b)
        inv.append(f"{b} ansible_host={h.address} ansible_port={h.port}")
    inv.append("")
    inv.append("[targets]")
    for b, names in batches.items():
        for i, n in enumerate(names):
            h = state.host(n)
            inv.append(
                f"{n} ansible_host={h.address} ansible_port={h.port} build_host={b} "
                f"build_index={i} target_address={h.address} target_port={h.port}"
            )
    inv += [
        "",
        "[all:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={state.operator_key}",
        f"ansible_ssh_common_args='{common}'",
        "ansible_python_interpreter=/usr/bin/python3",
        "",
    ]
    (work / "inventory.ini").write_text("\n".join(inv))
    forks = len(state.hosts)
    (work / "ansible.cfg").write_text(
        "\n".join(
            [
                "[defaults]",
                "inventory = inventory.ini",
                f"forks = {forks}",
                "gathering = explicit",
                "host_key_checking = True",
                "retry_files_enabled = False",
                f"local_tmp = {work}/local-tmp",
                "",
                "[ssh_connection]",
                "pipelining = True",
                f"control_path_dir = {work}/cp",
                "ssh_args = -o ControlMaster=auto -o ControlPersist=30s",
                "",
            ]
        )
    )
    attrs = {b: " ".join(f"-A hosts.{n}" for n in names) for b, names in batches.items()}
    src = "/var/lib/nixify/bench-src-ansible-{{ run_id }}"
    closure = "{{ hostvars[build_host].build.stdout_lines[build_index | int] }}"
    stc = f"{closure}/bin/switch-to-configuration"
    build = (
        f"nix-build {src}{args} {{{{ build_attrs[inventory_hostname] }}}}"
        " -o /tmp/bench-ansible-{{ inventory_hostname }}"
    )
    copy = (
        "NIX_SSHOPTS='-p {{ target_port }}' nix copy --to ssh://root@{{ target_address }} "
        + closure
    )
    gcroot = (
        "mkdir -p /nix/var/nix/gcroots/bench && "
        f"ln -sfn {closure} /nix/var/nix/gcroots/bench/current"
    )
    # the playbook is YAML; every value below is a plain or double-quoted scalar
    play = f"""\
- name: build on the builders
  hosts: builders
  gather_facts: false
  tasks:
    - name: source directory
      ansible.builtin.file:
        path: "{src}"
        state: directory
    - name: ship the fleet sources
      ansible.builtin.unarchive:
        src: "{work}/fleet.tar"
        dest: "{src}"
    - name: build every host of this builder
      ansible.builtin.shell: "{build}"
      register: build

- name: deliver, activate, pin
  hosts: targets
  gather_facts: false
  tasks:
    - name: copy the closure from its builder
      ansible.builtin.shell: "{copy}"
      delegate_to: "{{{{ build_host }}}}"
    - name: dry-activate
      ansible.builtin.shell: "{stc} dry-activate >/dev/null"
    - name: test
      ansible.builtin.shell: "{stc} test"
    - name: set the system profile
      ansible.builtin.shell: "nix-env -p /nix/var/nix/profiles/system --set {closure}"
    - name: switch
      ansible.builtin.shell: "{stc} switch"
    - name: GC root
      ansible.builtin.shell: "{gcroot}"
"""
    (work / "deploy.yml").write_text(play)
    vars_lines = ["build_attrs:"] + [f"  {b}: \"{a}\"" for b, a in attrs.items()]
    (work / "vars.yml").write_text("\n".join(vars_lines) + "\n")
    return work


def ansible_deploy(playbook: Path, work: Path, proj: Path) -> tuple[float, float]:
    # the sources as one tar (what `tar -c | ssh tar -x` does in the shell baseline),
    # made inside the wall as the shell script's tar is; -h: the fleet's symlinks
    # (fleet/secrets/*.py) are shipped as the files they point to
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(work / "ansible.cfg"),
        ANSIBLE_HOME=str(work / "home"),
        LC_ALL="C.UTF-8",
    )
    started = time.monotonic()
    sh(["tar", "-C", str(proj / "fleet"), "-chf", str(work / "fleet.tar"), "."])
    _, _, cpu = timed(
        [str(playbook), "deploy.yml", "-e", "@vars.yml", "-e", f"run_id={uuid.uuid4().hex[:12]}"],
        cwd=work, env=env,
    )  # fmt: skip
    return time.monotonic() - started, cpu


# ---------------------------------------------------------------- main


def _trials(ts: list[float]) -> str:
    return " ".join(f"{t:.2f}" for t in ts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=15)
    parser.add_argument("--scale", default="50,100",
                        help="larger lab sizes, comma-separated ('' for none)")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--lab-dir", default="",
                        help="the bench lab's directory (default: a temp dir)")
    parser.add_argument("--net", default=NET,
                        help=f"the bench lab's /24 on 127.0.0.0/8 (default {NET})")
    parser.add_argument("--port", type=int, default=2222)
    parser.add_argument("--rev", default="",
                        help="deploy a commit's code and project (git archive), not the "
                             "working tree")
    parser.add_argument("--no-ansible", action="store_true", help="skip the Ansible baseline")
    parser.add_argument("--ansible-venv", default=str(ANSIBLE_VENV),
                        help="bench-only virtualenv for ansible-core (made on first use)")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/deploy.py needs root (the lab)")
    if not opts.net.startswith("127."):
        raise SystemExit("--net: lab hosts live on 127.0.0.0/8 only")
    playbook = None if opts.no_ansible else ansible_venv(Path(opts.ansible_venv))
    fleet = load_fleet(REPO / "inventories" / "hosts.yaml")
    own_dir = not opts.lab_dir
    labdir = Path(opts.lab_dir or tempfile.mkdtemp(prefix="nixify-bench-lab-"))
    print(machine(), flush=True)
    head = sh(["git", "-C", str(REPO), "rev-parse", "--short", opts.rev or "HEAD"]).stdout.strip()
    print(f"code: {f'{opts.rev} ({head})' if opts.rev else f'working tree (HEAD {head})'}")
    with tempfile.TemporaryDirectory(prefix="nixify-bench-") as tmp:
        proj = project(Path(tmp), opts.rev)
        try:
            state = control.up(fleet, opts.hosts, labdir, opts.net, opts.port, REPO / "fleet")
            nixify_deploy(state, proj)  # warm: every host deployed once, pins exist
            work = ansible_project(state, proj, Path(tmp) / "ansible") if playbook else None
            if playbook and work:
                bump(proj, "1.8.0")
                ansible_deploy(playbook, work, proj)  # warm: ansible's caches, its first build
            shell_t: list[float] = []
            ansible_t: list[float] = []
            ours: list[float] = []
            rss: list[int] = []
            cpu: dict[str, list[float]] = {"nixify": [], "shell": [], "ansible": []}
            loads = [loadavg()]
            for trial in range(opts.trials):
                bump(proj, v := f"1.9.{trial * 3 + 1}")
                wall, used = baseline_deploy(state, proj)
                shell_t.append(wall)
                cpu["shell"].append(used)
                verify(state, v, "plain-shell")
                if playbook and work:
                    bump(proj, v := f"1.9.{trial * 3 + 2}")
                    wall, used = ansible_deploy(playbook, work, proj)
                    ansible_t.append(wall)
                    cpu["ansible"].append(used)
                    verify(state, v, "ansible-playbook")
                bump(proj, v := f"1.9.{trial * 3 + 3}")
                wall, peak, used = nixify_deploy(state, proj)
                cpu["nixify"].append(used)
                verify(state, v, "nixify")
                ours.append(wall)
                rss.append(peak)
                loads.append(loadavg())
            best = min(ours)
            vs_shell = best / min(shell_t)
            rows = [
                ["nixify deploy.py", f"{best:.2f}", _trials(ours), _trials(cpu["nixify"]), "-",
                 "-", f"{max(rss) / 1024:.0f} MiB"],
                ["plain-shell", f"{min(shell_t):.2f}", _trials(shell_t), _trials(cpu["shell"]),
                 f"nixify / shell = {vs_shell:.2f}x",
                 f"<= 1.15x: {'met' if vs_shell <= 1.15 else 'NOT met'}", "-"],
            ]
            if ansible_t:
                vs_ansible = min(ansible_t) / best
                rows.append(["ansible-playbook", f"{min(ansible_t):.2f}", _trials(ansible_t),
                             _trials(cpu["ansible"]), f"ansible / nixify = {vs_ansible:.2f}x",
                             f">= 8x: {'met' if vs_ansible >= 8 else 'NOT met'}", "-"])
            print(f"\ndeploy: {opts.hosts} hosts, one-package change (node-exporter), "
                  f"best of {opts.trials} trials; load (1/5/15 min) before and after each "
                  f"trial: {' | '.join(loads)}")
            print(table(["tool", "wall s", "trials s", "operator cpu s", "ratio", "target",
                         "operator peak RSS"], rows))
            print("\nnixify's last trial by gate (reports/latest.json):")
            print(table(["gate", "hosts", "median s", "slowest s", "first start..last end s"],
                        gate_times(proj)))
            control.down(labdir)
            sizes = [int(s) for s in opts.scale.split(",") if s.strip()]
            scale_rows = []
            for size in sizes:
                try:
                    state = control.up(fleet, size, labdir, opts.net, opts.port, REPO / "fleet")
                except NixifyError as exc:
                    scale_rows.append([str(size), "-", "-", "-", "-", f"not run: {exc}"])
                    continue
                try:
                    nixify_deploy(state, proj)
                    bump(proj, f"2.{size}.0")
                    wall, peak, used = nixify_deploy(state, proj)
                except RunFailed as exc:
                    print(exc, file=sys.stderr)
                    first = str(exc).splitlines()[1:2] or ["?"]
                    scale_rows.append([str(size), "-", "-", "-", "-",
                                       f"failed: {first[0][:100]}; load {loadavg()}"])
                    control.down(labdir)
                    continue
                scale_rows.append([str(size), f"{wall:.2f}", f"{wall / size:.3f}", f"{used:.1f}",
                                   f"{peak / 1024:.0f} MiB", f"load {loadavg()}"])
                control.down(labdir)
            if scale_rows:
                print("\nscale: nixify deploy.py, one-package change, one run per size")
                print(table(["hosts", "wall s", "per host s", "operator cpu s",
                             "operator peak RSS", "note"], scale_rows))
        finally:
            control.down(labdir)
            if own_dir:
                shutil.rmtree(labdir, ignore_errors=True)
    # the operator's children overall (pyinfra runs, ssh, nix): not the figure, a check
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"\nlargest child process of this bench: {kids / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
