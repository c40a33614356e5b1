"""Secrets end to end on the lab: provision, install on hosts, audit with real host keys."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pyrage
import pytest
from labkit import REPO, pyinfra, ssh

from nixify import paths
from nixify.inventory import load_fleet
from nixify.lab import LabState, control
from nixify.lab.control import fleet_for_state
from nixify.lab.secrets import HostKeyAndMounts, provision_lab_secrets
from nixify.secrets.audit import audit, trial_matrix
from nixify.secrets.keys import identities_from_file
from nixify.secrets.recipients import RECORD_NAME, RecipientsRecord
from nixify.secrets.rekey import discover
from nixify.secrets.sopsfile import SopsFile
from nixify.secrets.ssh_to_age import private_key_to_age_identity

pytestmark = pytest.mark.lab

# the host's own /run, not the /tmp it shares with the machine
# the decrypter from the host's own system closure: a host sees nothing of the operator's
HOST_SOPS = "/run/current-system/sw/bin/sops"

PROBE = (
    "cat > /run/nixify-probe.yaml; SOPS_AGE_KEY_CMD='python3 /var/lib/nixify/bin/host_identity.py "
    "/etc/ssh/ssh_host_ed25519_key' {sops} decrypt /run/nixify-probe.yaml >/dev/null 2>&1; "
    "rc=$?; rm -f /run/nixify-probe.yaml; exit $rc"
)

DEPLOY = """\
import os

from pyinfra.context import host

from operations.secrets import SshHostKey, deploy_secrets, record_host_key

if os.environ.get("SECRETS_COLLECT") == "1":
    change = record_host_key(host.data.secrets_dir, host.name, host.get_fact(SshHostKey))
    print(f"COLLECT {{host.name}} {{change}}")
deploy_secrets(name="nixify: secrets", decrypter={decrypter!r})
"""


def test_lab_secrets_install_and_blast_radius(
    make_lab: Callable[[str, int, str], LabState], tmp_path: Path
) -> None:
    state = make_lab("secrets", 5, "127.0.38")
    labdir = Path(state.dir)
    fleet = fleet_for_state(load_fleet(paths.hosts_file(REPO)), state)
    mounts = {h.name: list(fleet[h.name].secrets) for h in state.hosts}
    secrets = labdir / "secrets"
    op_file = labdir / "operator_age.txt"
    provision_lab_secrets(
        secrets,
        {
            h.name: HostKeyAndMounts(Path(h.host_key_pub).read_text(), mounts[h.name])
            for h in state.hosts
        },
        op_file,
    )
    files = discover([secrets])
    rel = {f: f.relative_to(secrets).as_posix() for f in files}
    op = [i.identity for i in identities_from_file(op_file)]
    plaintexts = {rel[f]: SopsFile.load(f).plaintext(op) for f in files}
    values = [
        m.group(1) for text in plaintexts.values() for m in re.finditer(r"^\w+: (\S+)$", text, re.M)
    ]
    assert len(values) == 2 * len(files)

    deploy = tmp_path / "secrets_deploy.py"
    deploy.write_text(DEPLOY.format(decrypter=HOST_SOPS))
    # the host-key fact, read on every host, rebuilds the record the provision wrote
    record_path = secrets / RECORD_NAME
    provisioned = RecipientsRecord.load(record_path)
    empty = RecipientsRecord.load(record_path)
    empty.hosts.clear()
    empty.save(record_path)
    first = pyinfra(state, "inventories/lab.py", str(deploy), "-y", env={"SECRETS_COLLECT": "1"})
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert RecipientsRecord.load(record_path) == provisioned
    assert first.stdout.count(" new\n") >= len(state.hosts)

    for h in state.hosts:
        link = ssh(state, h.name, "readlink /run/secrets").stdout.strip()
        assert re.fullmatch(r"/run/secrets\.d/\d+", link)
        for f in mounts[h.name]:
            stat = ssh(state, h.name, f"stat -c '%a %U %G' /run/secrets/{f}").stdout.split()
            assert stat == ["400", "root", "root"], (h.name, f, stat)
            got = ssh(state, h.name, f"cat /run/secrets/{f}").stdout
            assert got == plaintexts[f]
        installed = ssh(state, h.name, "cd /run/secrets && find . -type f | sort").stdout.split()
        assert installed == sorted(f"./{f}" for f in mounts[h.name])
        # only encrypted files were uploaded
        for f in mounts[h.name]:
            head = ssh(state, h.name, f"cat /var/lib/nixify/secrets/{f}").stdout
            assert "sops:" in head and not any(v in head for v in values)

    # no plaintext value in pyinfra's output, even at -vvv
    again = pyinfra(state, "inventories/lab.py", str(deploy), "-y", "-vvv")
    assert again.returncode == 0
    for out in (first.stdout + first.stderr, again.stdout + again.stderr):
        leaked = [v for v in values if v in out]
        assert not leaked
    assert "already installed" in again.stdout + again.stderr  # idempotent: no new generation

    # a host whose key no longer matches the record is held back, with the reason
    victim = state.hosts[0].name
    record = RecipientsRecord.load(record_path)
    other = state.hosts[1]
    record.hosts[victim] = replace(record.hosts[other.name], name=victim)
    record.save(record_path)
    generation = ssh(state, victim, "readlink /run/secrets").stdout
    held = pyinfra(state, "inventories/lab.py", str(deploy), "-y")
    record.hosts[victim] = provisioned.hosts[victim]
    record.save(record_path)
    out = held.stdout + held.stderr
    assert held.returncode != 0
    assert f"{victim}: host key changed since it was recorded (rebuilt host?)" in out
    assert ssh(state, victim, "readlink /run/secrets").stdout == generation

    # blast radius: every host key tried against every file equals the mounts
    host_ids = {
        h.name: pyrage.x25519.Identity.from_str(
            private_key_to_age_identity(
                Path(h.host_key_pub).with_suffix("").read_bytes(), where=h.name
            )
        )
        for h in state.hosts
    }
    tried = trial_matrix(files, host_ids)
    expected = {h: {str(f): rel[f] in mounts[h] for f in files} for h in host_ids}
    assert tried == expected
    report = audit(secrets, RecipientsRecord.load(secrets / RECORD_NAME), mounts)
    assert report.ok, report.problems
    assert report.matrix() == {h: {rel[f]: rel[f] in mounts[h] for f in files} for h in host_ids}

    # and on a host itself, with the real sops: its own key opens what it mounts, nothing else
    h = next(h for h in state.hosts if any(rel[f] not in mounts[h.name] for f in files))
    foreign = next(f for f in files if rel[f] not in mounts[h.name])
    own = secrets / mounts[h.name][0]
    for f, should_open in ((own, True), (foreign, False)):
        proc = subprocess.run(
            ["ssh", *state.ssh_args(h.name), PROBE.format(sops=HOST_SOPS)],
            input=f.read_bytes(),
            capture_output=True,
        )
        assert (proc.returncode == 0) is should_open, (h.name, rel[f], proc.stderr)

    # the host is rebuilt: a new host key. The fact sees it, the deploy holds the host
    # back naming the files to rekey, a rekey fixes it, and the next deploy installs.
    _rebuild_host(state, victim)
    env = {"SECRETS_COLLECT": "1"}
    held = pyinfra(state, "inventories/lab.py", str(deploy), "-y", "--limit", victim, env=env)
    out = held.stdout + held.stderr
    assert f"COLLECT {victim} changed" in out
    assert f"{victim}: not keyed to its current host key: {' '.join(mounts[victim])}" in out
    assert held.returncode != 0
    op_env = {**os.environ, "SOPS_AGE_KEY_FILE": str(op_file), "HOME": str(tmp_path)}
    nixify = [str(Path(sys.executable).parent / "nixify"), "secrets"]
    check = subprocess.run(
        [*nixify, "check", "--secrets-dir", str(secrets)],
        capture_output=True,
        text=True,
        env=op_env,
    )
    assert check.returncode == 1 and f"{victim}: host key changed" in check.stdout
    for step in (["rules", "--secrets-dir", str(secrets)], ["rekey", str(secrets)]):
        done = subprocess.run([*nixify, *step], capture_output=True, text=True, env=op_env)
        assert done.returncode == 0, done.stderr
    assert f"-{victim} (old key)" in done.stdout
    fixed = pyinfra(state, "inventories/lab.py", str(deploy), "-y", "--limit", victim)
    assert fixed.returncode == 0, fixed.stdout[-2000:]
    for f in mounts[victim]:
        assert ssh(state, victim, f"cat /run/secrets/{f}").stdout == plaintexts[f]
    assert ssh(state, victim, "readlink /run/secrets").stdout != generation


def _rebuild_host(state: LabState, name: str) -> None:
    """A rebuilt machine: same name and address, a new ed25519 host key."""
    host = state.host(name)
    key = Path(host.host_key_pub).with_suffix("")
    old_blob = Path(host.host_key_pub).read_text().split()[1]
    control.stop_host(Path(state.dir), name)
    key.unlink()
    Path(host.host_key_pub).unlink()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(key)],
        check=True,
    )
    new_blob = Path(host.host_key_pub).read_text().split()[1]
    known = Path(state.known_hosts)
    known.write_text(known.read_text().replace(old_blob, new_blob))
    control.start_host(Path(state.dir), name)
