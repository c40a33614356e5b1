"""Host key rotation on the lab (issue 16.11): a host is reinstalled (new SSH host
key); `lab status` shows it, `secrets check` names exactly that host in one line
(its key read live), `secrets rotate-host` makes everything whole again: the
check is clean, the host's secrets decrypt on the host again, and a builder can
copy a closure to it again."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from labkit import REPO, VENV_BIN

from nixify.lab import LabState, control
from nixify.secrets.recipients import RECORD_NAME, RecipientsRecord
from nixify.secrets.rekey import MOUNTS_NAME
from nixify.transport import SshTransport, copy_closure

pytestmark = pytest.mark.lab

PROBE_DIR = "/var/lib/nixify/secrets/key-rotation-probe"
VICTIM = "nas-1"
BUILDER = "builder-1"


def nixify(state: LabState, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NIXIFY_LAB_DIR=state.dir)
    env.pop("NIXIFY_INVENTORY", None)
    return subprocess.run([str(VENV_BIN / "nixify"), *args], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=300)


def secrets_args(state: LabState) -> list[str]:
    labdir = Path(state.dir)
    return ["--secrets-dir", str(labdir / "secrets"), "--ssh-inventory", "inventories/lab.py",
            "--identity", str(labdir / "operator_age.txt")]


def host_decrypts(state: LabState) -> subprocess.CompletedProcess[str]:
    """The victim's own activation step (its system's ``nixify-secrets``, its own host
    key) opens every file it mounts: ``dry-activate`` on the encrypted files."""
    secrets = Path(state.dir) / "secrets"
    mounts = yaml.safe_load((secrets / MOUNTS_NAME).read_text())[VICTIM]
    t = SshTransport(VICTIM, state.ssh_args(VICTIM))
    manifest = {"files": [{"file": f, "mode": "0400", "owner": "root", "group": "root"}
                          for f in mounts]}
    dirs = " ".join(sorted({f"{PROBE_DIR}/files/{Path(f).parent}" for f in mounts}))
    t.run(f"mkdir -p {dirs}", check=True)
    t.write_file(f"{PROBE_DIR}/manifest.json", json.dumps(manifest).encode())
    for f in mounts:
        t.write_file(f"{PROBE_DIR}/files/{f}", (secrets / f).read_bytes())
    res = t.run(f"/run/current-system/sw/bin/nixify-secrets dry-activate {PROBE_DIR}")
    return subprocess.CompletedProcess([], res.rc, res.stdout, res.stderr)


def builder_copies_to_victim(state: LabState) -> subprocess.CompletedProcess[str]:
    """The builder pushes a closure of its own to the victim, as a deploy does."""
    victim = state.host(VICTIM)
    builder = SshTransport(BUILDER, state.ssh_args(BUILDER))
    path = builder.run("readlink -f /run/current-system", check=True).stdout.strip()
    res = copy_closure(builder, [path], f"root@{victim.address}",
                       ssh_options=["-p", str(victim.port)], timeout=120)
    return subprocess.CompletedProcess([], res.rc, res.stdout, res.stderr)


def test_a_reinstalled_host_is_seen_rotated_and_reachable_again(
    make_lab: Callable[[str, int, str], LabState],
) -> None:
    state = make_lab("hostkeys", 5, "127.0.52")
    labdir = Path(state.dir)
    names = [h.name for h in state.hosts]
    assert VICTIM in names and BUILDER in names
    first = host_decrypts(state)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    clean = nixify(state, "secrets", "check", *secrets_args(state))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"host keys: {len(names)} of {len(names)} read live" in clean.stdout

    # the host is reinstalled: a new host key, sshd restarted
    control.stop_host(labdir, VICTIM)
    etc_ssh = Path(state.host(VICTIM).root) / "etc-ssh"
    for f in etc_ssh.glob("ssh_host_ed25519_key*"):
        f.unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{VICTIM}",
                    "-f", str(etc_ssh / "ssh_host_ed25519_key")], check=True)
    control.start_host(labdir, VICTIM)
    new_key = " ".join((etc_ssh / "ssh_host_ed25519_key.pub").read_text().split()[:2])

    # lab status shows it (and only it)
    status = nixify(state, "lab", "status", "--dir", state.dir)
    assert status.returncode == 0, status.stdout + status.stderr
    changed = [ln for ln in status.stdout.splitlines() if "HOST KEY CHANGED" in ln]
    assert len(changed) == 1 and changed[0].startswith(VICTIM), status.stdout
    doc = json.loads(nixify(state, "lab", "status", "--json", "--dir", state.dir).stdout)
    assert [h["name"] for h in doc["hosts"] if h["host_key_changed"]] == [VICTIM]

    # secrets check: exactly that host, in one line, without a collect step
    check = nixify(state, "secrets", "check", *secrets_args(state))
    assert check.returncode == 1
    lines = [ln for ln in check.stdout.splitlines() if not ln.startswith(("host keys:", "note:"))]
    assert len(lines) == 1, check.stdout
    assert lines[0].startswith(f"{VICTIM}: host key changed since it was recorded (rebuilt?)")
    assert "rotate-host nas-1" in lines[0] and "files to rekey" in lines[0]
    assert all(n not in check.stdout for n in names if n != VICTIM)
    # ... and the builder refuses the new key, as it must
    refused = builder_copies_to_victim(state)
    assert refused.returncode != 0
    assert "host key" in refused.stderr.lower() or "identification" in refused.stderr.lower()

    # the rotation
    rot = nixify(state, "secrets", "rotate-host", VICTIM, *secrets_args(state))
    assert rot.returncode == 0, rot.stdout + rot.stderr
    assert f"{VICTIM}: rotated" in rot.stdout
    assert f"{BUILDER}: /root/.ssh/known_hosts updated for {VICTIM}" in rot.stdout
    record = RecipientsRecord.load(labdir / "secrets" / RECORD_NAME)
    assert record.hosts[VICTIM].ssh_host_key == new_key
    assert new_key in Path(state.known_hosts).read_text()

    after = nixify(state, "secrets", "check", *secrets_args(state))
    assert after.returncode == 0, after.stdout + after.stderr
    status = nixify(state, "lab", "status", "--dir", state.dir)
    assert "HOST KEY CHANGED" not in status.stdout
    # the host decrypts its secrets with its new key, on the host
    again = host_decrypts(state)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    # the builder copies to it again
    copied = builder_copies_to_victim(state)
    assert copied.returncode == 0, copied.stderr
    # a second rotation changes nothing
    twice = nixify(state, "secrets", "rotate-host", VICTIM, *secrets_args(state))
    assert twice.returncode == 0, twice.stdout + twice.stderr
    assert "already recorded" in twice.stdout and "0 rekeyed" in twice.stdout
