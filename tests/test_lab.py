"""The lab: real sshd hosts, each with its own store, /run and host key."""

from __future__ import annotations

import os
import signal
import subprocess
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


def test_up_twice_is_safe_down_leaves_nothing_and_stale_state_is_cleaned(
    make_lab: Callable[[str, int, str], LabState],
) -> None:
    state = make_lab("lifecycle", 3, "127.0.8")
    pids = [h.pid for h in state.hosts]
    again = make_lab("lifecycle", 3, "127.0.8")  # second `up`: reports the running lab
    assert [h.pid for h in again.hosts] == pids

    # a killed host (stale state): the next `up` notices and restarts cleanly
    os.kill(state.hosts[0].pid, signal.SIGKILL)
    os.waitpid(state.hosts[0].pid, 0)
    assert not host_alive(state.hosts[0])
    restarted = make_lab("lifecycle", 3, "127.0.8")
    assert all(host_alive(h) for h in restarted.hosts)
    assert all(h.pid not in pids for h in restarted.hosts)
    ssh(restarted, restarted.hosts[0].name, "true")

    namespaces = {h.mnt_ns for h in restarted.hosts}
    control.down(Path(restarted.dir))
    left = [p for p in os.listdir("/proc") if p.isdigit() and _ns(p) in namespaces]
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
