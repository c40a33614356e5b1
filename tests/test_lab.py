"""The lab: real sshd hosts, each with its own store, /run and host key."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from labkit import pyinfra as run_pyinfra
from labkit import ssh

from nixify.lab import LabState, control, host_alive

pytestmark = pytest.mark.lab


def test_every_host_answers_over_ssh_at_its_own_address_with_its_own_key(lab: LabState) -> None:
    assert len(lab.hosts) == 15
    addresses = {h.address for h in lab.hosts}
    assert len(addresses) == 15
    for h in lab.hosts:
        out = ssh(
            lab,
            h.name,
            "echo $SSH_CONNECTION; cat /etc/ssh/ssh_host_ed25519_key.pub; "
            "readlink /run/current-system; readlink -f "
            "/nix/var/nix/profiles/system",
        ).stdout.split("\n")
        assert out[0].split()[2] == h.address  # the server side of the connection
        assert out[1].split()[:2] == Path(h.host_key_pub).read_text().split()[:2]
        assert out[2] == h.initial_system and f"nixos-system-{h.name}-" in out[2]
        assert out[3] == h.initial_system
    keys = {Path(h.host_key_pub).read_text().split()[1] for h in lab.hosts}
    assert len(keys) == 15


def test_hosts_run_their_role_and_nix_settings(lab: LabState) -> None:
    for h in lab.hosts:
        out = ssh(lab, h.name, "cat /run/current-system/role; nix show-config | grep '^max-jobs'")
        role, max_jobs = out.stdout.split("\n")[:2]
        assert role == h.role
        expected = "0" if h.role in ("wsl_dev", "laptop", "edge_ml") else None
        if expected is not None:
            assert max_jobs == "max-jobs = 0", h.name
        else:
            assert max_jobs != "max-jobs = 0", h.name


def test_a_path_added_on_one_host_is_in_no_other_store(lab: LabState) -> None:
    marker = f"isolation-{uuid.uuid4().hex}"
    added = ssh(lab, "nas-1", f"echo {marker} > /tmp/{marker} && nix-store --add /tmp/{marker}")
    path = added.stdout.strip()
    assert path.startswith("/nix/store/") and path.endswith(marker)
    assert ssh(lab, "nas-1", f"test -e {path}", check=False).returncode == 0
    for h in lab.hosts:
        if h.name != "nas-1":
            assert ssh(lab, h.name, f"test -e {path}", check=False).returncode == 1, h.name
    assert not Path(path).exists()  # not in this machine's own /nix either
    ssh(lab, "nas-1", f"rm -f /tmp/{marker}")


def test_garbage_collection_on_one_host_deletes_nothing_elsewhere(lab: LabState) -> None:
    marker = f"gc-{uuid.uuid4().hex}"
    add = f"echo {marker} > /tmp/{marker} && nix-store --add /tmp/{marker} && rm /tmp/{marker}"
    paths = {h: ssh(lab, h, add).stdout.strip() for h in ("nas-2", "nas-3")}
    assert paths["nas-2"] == paths["nas-3"]  # same content, same path, two stores
    ssh(lab, "nas-2", "nix-collect-garbage -d >/dev/null 2>&1")
    assert ssh(lab, "nas-2", f"test -e {paths['nas-2']}", check=False).returncode == 1
    assert ssh(lab, "nas-3", f"test -e {paths['nas-3']}", check=False).returncode == 0
    # the collected host still runs its system (it is a GC root)
    ssh(lab, "nas-2", "test -x /run/current-system/bin/switch-to-configuration")


def test_limit_to_a_role_touches_only_that_role(lab: LabState) -> None:
    proc = run_pyinfra(lab, "-y", "inventories/lab.py", "tests/deploys/facts.py", "--limit", "nas")
    assert proc.returncode == 0, proc.stderr
    facts = [line.split() for line in proc.stdout.splitlines() if line.startswith("FACT ")]
    assert sorted(f[1] for f in facts) == ["nas-1", "nas-2", "nas-3"]
    assert all(f[2] == "nas" for f in facts)
    connected = [line for line in (proc.stdout + proc.stderr).splitlines() if "Connected" in line]
    assert connected and all("nas-" in line for line in connected), connected


def test_lab_status_json_lists_hosts(lab: LabState) -> None:
    import json
    import sys

    nixify = Path(sys.executable).with_name("nixify")
    proc = subprocess.run(
        [str(nixify), "lab", "status", "--json", "--dir", lab.dir], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["hosts"]) == 15
    for entry in doc["hosts"]:
        assert {"name", "role", "address", "port", "identity_file"} <= set(entry)
        assert entry["up"] is True and Path(entry["identity_file"]).exists()


def test_up_twice_is_safe_a_dead_host_boots_again_and_down_leaves_nothing(
    make_lab: Callable[[str, int, str], LabState],
) -> None:
    state = make_lab("lifecycle", 3, "127.0.8")
    pids = [h.pid for h in state.hosts]
    again = make_lab("lifecycle", 3, "127.0.8")  # second `up`: reports the running lab
    assert [h.pid for h in again.hosts] == pids

    # a killed host: the next `up` boots that one again and leaves the others alone
    dead = state.hosts[0]
    marker = f"/var/lib/nixify/kept-{uuid.uuid4().hex}"
    ssh(state, dead.name, f"touch {marker} /run/gone-at-boot")
    os.kill(dead.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(dead.pid, 0)
    deadline = time.monotonic() + 10
    while host_alive(dead) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not host_alive(dead)
    restarted = make_lab("lifecycle", 3, "127.0.8")
    assert all(host_alive(h) for h in restarted.hosts)
    assert restarted.hosts[0].pid not in pids
    assert [h.pid for h in restarted.hosts[1:]] == pids[1:]  # not wiped, not restarted
    out = ssh(restarted, dead.name, f"test -e {marker} && ! test -e /run/gone-at-boot && "
              "readlink /run/booted-system /run/current-system").stdout.split()
    assert out == [dead.initial_system, dead.initial_system]

    namespaces = {h.mnt_ns: h for h in restarted.hosts}
    control.down(Path(restarted.dir))
    # a namespace number is reused at once (by other labs): a process is the lab's
    # only if it also has the host's mounts
    left = [p for p in os.listdir("/proc") if p.isdigit() and _ns(p) in namespaces
            and control._owned_by(int(p), namespaces[_ns(p)])]
    assert left == []
    assert not any(host_alive(h) for h in restarted.hosts)
    mounts = Path("/proc/self/mountinfo").read_text()
    assert restarted.dir not in mounts
    for h in restarted.hosts:
        assert (
            subprocess.run(
                ["ssh", *restarted.ssh_args(h.name), "true"], capture_output=True
            ).returncode
            != 0
        )


def test_a_host_sees_nothing_of_the_machine_but_the_system_basics(lab: LabState) -> None:
    """The operator's checkout, its virtualenv, the lab directory and the rest of the
    machine are invisible from every host; its own store, /tmp and processes only."""
    readme = Path(__file__).resolve().parent.parent / "README.md"
    python = Path(sys.executable)
    assert readme.is_file() and python.exists() and Path(lab.dir).is_dir()
    mine = f"/tmp/mine-{uuid.uuid4().hex}"
    Path(mine).write_text("the machine's /tmp\n")
    private = [str(readme), str(python), lab.dir, str(Path(lab.dir) / "lab.json"),
               lab.operator_key, mine, "/home", "/opt", "/work", "/srv", "/mnt",
               "/root/.bashrc", f"/proc/1/root{readme}", f"/proc/1/root{lab.dir}"]
    script = " ; ".join(f"if test -e {p} || cat {p} >/dev/null 2>&1; then echo SEEN {p}; fi"
                        for p in private)
    basics = "test -x /usr/bin/python3 && test -r /etc/passwd && test -d /nix/store && " \
             "test -r /etc/ssh/ssh_host_ed25519_key && echo BASICS"
    try:
        for h in lab.hosts:
            out = ssh(lab, h.name, f"{script}; {basics}; hostname; "
                      "ls /proc | grep -c '^[0-9]'; ls /").stdout.split("\n")
            assert not [line for line in out if line.startswith("SEEN")], (h.name, out)
            assert out[0] == "BASICS" and out[1] == h.name, out
            assert int(out[2]) < 20, f"{h.name} sees the machine's processes: {out[2]}"
            assert not {"work", "home", "opt", "srv", "mnt"} & set(out[3:]), out
    finally:
        Path(mine).unlink()


def test_lab_reboot_kills_clears_run_and_boots_the_profiles_system(
    make_lab: Callable[[str, int, str], LabState],
) -> None:
    state = make_lab("reboot", 3, "127.0.7")
    host = state.hosts[0]
    nixify = Path(sys.executable).with_name("nixify")
    ssh(state, host.name, "setsid sleep 600 </dev/null >/dev/null 2>&1 & "
        "touch /run/stale /var/lib/nixify/kept")
    assert "sleep 600" in ssh(state, host.name, "ps -eo args").stdout
    key = ssh(state, host.name, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout
    # the running system differs from the boot entry: the boot follows the entry
    other = ssh(state, state.hosts[1].name, "readlink /run/current-system").stdout.strip()
    ssh(state, host.name, "mkdir -p /run/nixify-lab && ln -sfn /nix/store/elsewhere "
        "/run/current-system")
    proc = subprocess.run([str(nixify), "lab", "reboot", host.name, "--dir", state.dir],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert f"{host.name}: booted {host.initial_system}; activation exit 0" in proc.stdout
    after = control.status(Path(state.dir))[0]
    assert after is not None and after.host(host.name).pid != host.pid
    out = ssh(state, host.name, "ps -eo args | grep -q '^sleep 600' && echo ALIVE; "
              "test -e /run/stale && echo STALE; test -e /var/lib/nixify/kept && echo KEPT; "
              "readlink /run/booted-system /run/current-system; "
              "cat /run/nixify-lab/units/sshd.service; "
              "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout
    assert "ALIVE" not in out and "STALE" not in out and "KEPT" in out
    lines = out.splitlines()
    assert lines[1:3] == [host.initial_system, host.initial_system] != [other, other]
    assert lines[3] == "active" and lines[4] == key.strip()
    assert all(host_alive(h) for h in after.hosts)


def _ns(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def test_a_stale_record_never_kills_a_process_that_reuses_its_namespace_number(
    tmp_path: Path,
) -> None:
    """Namespace numbers are reused: down() checks a process's own mounts too."""
    from nixify.lab.state import LabHostState

    if os.geteuid() != 0:
        pytest.fail("needs root (unshare -m), as CI has")
    other = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while _ns(str(other.pid)) in ("", _ns("self")) and time.monotonic() < deadline:
            time.sleep(0.02)
        stale = LabState(dir=str(tmp_path), net="127.0.250", port=2222, hosts=[LabHostState(
            name="ghost-1", role="nas", declared=False, address="127.0.250.10", port=2222,
            root=str(tmp_path / "hosts" / "ghost-1"), pid=other.pid, mnt_ns=_ns(str(other.pid)),
        )])
        stale.save()
        assert not host_alive(stale.hosts[0])
        assert control.down(tmp_path) == 0
        assert other.poll() is None  # still running: not one of the lab's
    finally:
        other.kill()
        other.wait()
